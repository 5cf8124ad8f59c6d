"""Search spaces: declared by each optimizer, resolved for a run's length, drawn quasi-randomly.

An optimizer declares ``search_space = {hyperparameter: dimension}`` on its registry entry:

- ``("log", low, high)``, ``("uniform", low, high)``, ``("choice", [options])``: fixed ranges;
- ``("log1m", low, high)``: a momentum-like ``m`` in [0, 1) whose ``1 - m`` is log-uniform in
  [low, high], so draws crowd towards 1 as the paper's best momenta do (0.56-0.97 in 7 of 8 CNN/ViT
  configurations) instead of spreading linearly;
- ``("horizon", tau_min, fraction[, "updates"])``: an EMA rate ``r`` (``lr_cov`` = 1 - beta2) whose time
  constant ``1 / r`` is log-uniform in [``tau_min``, ``fraction`` x the run's horizon]; the horizon is the
  tier's step budget, or its number of preconditioner updates (steps / T) with ``"updates"``. A warm start
  (RF-RMSProp's s0 = 1) keeps exp(-t / tau) of its weight after t steps, so with ``fraction`` <= 1/2 every
  draw has forgotten at least 1 - e^-2 = 86 % of it by the end: no draw is SGD in disguise, and the box
  scales with the run instead of being fixed for one length. ``resolve`` turns it into a concrete
  ``("log", low, high)`` range (recorded in the sweep manifest).

Draws are quasi-random (a scrambled Halton sequence from ``scipy.stats.qmc``), seeded per (task,
optimizer, sampler seed), so every optimizer on every task gets its own well-spread points rather than the
same unit-cube points everywhere. Floats are rounded to 4 significant digits; integer hyperparameters to
integers.
"""

from __future__ import annotations

import hashlib
import math

from rootbench.harness.registry import UsageError

SIG_DIGITS = 4
KINDS = ("log", "uniform", "choice", "log1m", "horizon")
# A trial whose preconditioner is still more than this share owed to its initial value at the end
# (``warm_start_share``, reported by optimizers that declare a warm start) is heavy-ball SGD in disguise:
# sweeps do not select it and verdicts do not use it (Lin et al. 2024 compare the preconditioners).
WARM_START_LIMIT = 0.5
SAMPLER = "scrambled Halton (scipy.stats.qmc), seeded per (task, optimizer, sampler seed)"


def check_dim(key: str, dim) -> tuple:
    """A validated dimension; ``horizon`` dimensions must be resolved (``resolve``) before sampling."""
    if not isinstance(dim, (tuple, list)) or not dim or dim[0] not in KINDS:
        raise UsageError(
            f"search-space entry {key}={dim!r}: expected one of {', '.join(KINDS)} "
            "('log', low, high), ('choice', [options]), ('horizon', tau_min, fraction), ..."
        )
    kind = dim[0]
    if kind == "choice":
        if len(dim) != 2 or not list(dim[1]):
            raise UsageError(f"search-space entry {key}={dim!r}: a choice needs a non-empty list")
        return ("choice", list(dim[1]))
    if kind == "horizon":
        if (
            len(dim) not in (3, 4)
            or not (float(dim[1]) > 0 and 0 < float(dim[2]) <= 1)
            or (len(dim) == 4 and dim[3] not in ("steps", "updates"))
        ):
            raise UsageError(
                f"search-space entry {key}={dim!r}: expected ('horizon', tau_min > 0, "
                "0 < fraction <= 1[, 'steps' | 'updates'])"
            )
        return ("horizon", float(dim[1]), float(dim[2]), dim[3] if len(dim) == 4 else "steps")
    if len(dim) != 3:
        raise UsageError(f"search-space entry {key}={dim!r}: expected ({kind!r}, low, high)")
    lo, hi = sorted((float(dim[1]), float(dim[2])))  # a reversed range (the paper has one) is read as meant
    if kind in ("log", "log1m") and lo <= 0:
        raise UsageError(f"search-space entry {key}={dim!r}: a {kind} range needs positive bounds")
    if kind == "log1m" and hi > 1:
        raise UsageError(f"search-space entry {key}={dim!r}: 1 - m lies in (0, 1]")
    return (kind, lo, hi)


def resolve(space: dict, steps: int, period: int = 1) -> dict:
    """``space`` with every ``horizon`` dimension turned into the ``("log", low, high)`` range of this run."""
    out = {}
    for key, dim in space.items():
        dim = check_dim(key, dim)
        if dim[0] == "horizon":
            _, tau_min, fraction, unit = dim
            horizon = steps / max(1, period) if unit == "updates" else steps
            tau_max = max(tau_min, fraction * horizon)
            lo, hi = 1.0 / tau_max, min(1.0, 1.0 / tau_min)
            dim = (
                ("log", _round_sig(lo), _round_sig(hi)) if lo < hi else ("log", _round_sig(lo), _round_sig(lo) * 1.0001)
            )
        out[key] = dim
    return out


def carry(space: dict, config: dict, from_steps: int, to_steps: int, from_period: int = 1, to_period: int = 1) -> dict:
    """``config``, chosen for a run of ``from_steps``, carried to a run of ``to_steps``: each ``horizon``
    hyperparameter of the declared ``space`` keeps its time constant's share of the run (a rate drawn at
    a tenth of a 800-step run becomes a tenth of a 4,000-step run); every other value is kept as it is."""
    out = dict(config)
    for key, dim in space.items():
        dim = check_dim(key, dim)
        if dim[0] != "horizon" or key not in config:
            continue
        per_from = max(1, from_period) if dim[3] == "updates" else 1
        per_to = max(1, to_period) if dim[3] == "updates" else 1
        rate = float(config[key]) * (from_steps / per_from) / (to_steps / per_to)
        out[key] = min(1.0, _round_sig(rate))
    return out


def _round_sig(x: float, digits: int = SIG_DIGITS) -> float:
    return float(f"{x:.{digits - 1}e}")


def _value(dim: tuple, u: float, default):
    """The point of ``dim`` at unit coordinate ``u`` in [0, 1)."""
    kind = dim[0]
    if kind == "choice":
        return dim[1][min(int(u * len(dim[1])), len(dim[1]) - 1)]
    lo, hi = dim[1], dim[2]
    if kind == "log":
        value = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    elif kind == "log1m":  # 1 - m log-uniform; u = 0 gives the largest m
        value = 1.0 - math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        lo, hi = 1.0 - hi, 1.0 - lo
    else:
        value = lo + u * (hi - lo)
    if isinstance(default, int) and not isinstance(default, bool):
        return int(min(max(round(value), math.ceil(lo)), math.floor(hi)))
    return min(max(_round_sig(value), lo), hi)


def stream_seed(*parts) -> int:
    """A 32-bit seed from names and numbers, stable across processes and Python versions."""
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def sample_configs(
    space: dict, n: int, seed: int, stage: int = 1, defaults: dict | None = None, stream: tuple = ()
) -> list[dict]:
    """``n`` configurations of ``space`` (resolved): a pure function of (space, n, seed, stage, stream).

    ``stream`` (e.g. ``(task, optimizer)``) makes the points of different task/optimizer pairs independent.
    """
    from scipy.stats import qmc

    defaults = defaults or {}
    dims = {k: check_dim(k, space[k]) for k in sorted(space)}
    if any(d[0] == "horizon" for d in dims.values()):
        raise UsageError("resolve the search space (search.resolve) before sampling: it has horizon dimensions")
    if not dims or n <= 0:
        return [{} for _ in range(max(0, n))]
    engine = qmc.Halton(d=len(dims), scramble=True, seed=stream_seed(*stream, seed, stage))
    points = engine.random(n)
    return [{k: _value(dim, float(u), defaults.get(k)) for (k, dim), u in zip(dims.items(), row)} for row in points]


def narrow(space: dict, best: list[dict], widen: float) -> dict:
    """Each dimension narrowed to the span of the ``best`` configs (in its own scale), widened by ``widen`` of
    the declared width on each side and clipped to it; fewer than two configs: ``space`` unchanged."""
    if len(best) < 2:
        return dict(space)
    out = {}
    for key, dim in space.items():
        dim = check_dim(key, dim)
        values = [b[key] for b in best if key in b]
        if dim[0] == "choice":
            kept = [o for o in dim[1] if o in values]
            out[key] = ("choice", kept or list(dim[1]))
            continue
        lo, hi = dim[1], dim[2]
        if dim[0] == "log1m":  # narrow 1 - m in log space
            values = [1.0 - v for v in values]
        fwd, inv = (math.log, math.exp) if dim[0] in ("log", "log1m") else (float, float)
        values = [v for v in values if v > 0] if fwd is math.log else values
        if len(values) < 2:
            out[key] = dim
            continue
        margin = widen * (fwd(hi) - fwd(lo))
        new_lo = max(lo, _round_sig(inv(min(fwd(v) for v in values) - margin)))
        new_hi = min(hi, _round_sig(inv(max(fwd(v) for v in values) + margin)))
        out[key] = (dim[0], new_lo, new_hi) if new_lo < new_hi else dim
    return out


def as_json(space: dict) -> dict:
    return {k: list(v) if v[0] != "choice" else ["choice", list(v[1])] for k, v in space.items()}


def describe(space: dict) -> str:
    if not space:
        return "(empty: every searched hyperparameter is pinned)"
    parts = []
    for k, v in space.items():
        if v[0] == "choice":
            parts.append(f"{k} choice {v[1]}")
        elif v[0] == "log1m":
            parts.append(f"{k} in [{1 - v[2]:.4g}, {1 - v[1]:.4g}] (1-{k} log-uniform)")
        else:
            parts.append(f"{k} {v[0]} [{v[1]:.3g}, {v[2]:.3g}]")
    return ", ".join(parts)

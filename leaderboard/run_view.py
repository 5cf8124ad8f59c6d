"""What a configuration's page shows — every seed of it, one section per run — from its folder alone (the runs and
the folder's sweep manifests), so that the workers that read a folder can write its pages and an unchanged
folder's pages can be reused. Each run keeps its own address, ``runs/<run_id>.html``, which forwards to its
section.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shlex
from urllib.parse import quote

from markupsafe import Markup

from rootbench.harness import records
from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard import series
from rootbench.leaderboard.fmt import (
    WARM_START_LIMIT,
    anchor,
    diverged_text,
    missing,
    nbytes,
    num,
    ratio,
    relative,
    safe_name,
    seconds,
    task_href,
    text,
    warm_start_tag,
)

PROVENANCE = records.PROVENANCE_COLUMNS
BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _literal(v) -> str:
    """A value as ``rootbench bench`` parses it (``harness.config.parse_overrides``: Python literals, bare words)."""
    if isinstance(v, str):
        return v if BARE.fullmatch(v) and v not in ("True", "False", "None") else repr(v)
    return repr(v)


def _config(r: dict) -> dict:
    try:
        cfg = json.loads(r.get("config_json") or "{}")
    except (TypeError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def reproduce(r: dict, cfg: dict | None = None) -> str:
    """The command that reruns this run: every hyperparameter and tier setting given explicitly, so the command
    stays right if a default changes (``--force`` reruns it even where the run is cached)."""
    cfg = _config(r) if cfg is None else cfg
    hp = cfg.get("hparams") or {k[3:]: v for k, v in r.items() if k.startswith("hp_") and not missing(v)}
    ts = cfg.get("task_config") or {
        k[5:]: v for k, v in r.items() if k.startswith("task_") and k != "task_source_hash" and not missing(v)
    }
    args = [
        "rootbench",
        "bench",
        "--task",
        str(r.get("task")),
        "--opt",
        str(r.get("optimizer")),
        "--tier",
        str(r.get("tier")),
        "--seed",
        str(r.get("seed")),
        "--precision",
        str(r.get("precision") or "fp32"),
    ]
    if not missing(r.get("time_limit_s")):
        args += ["--time-limit", f"{float(r['time_limit_s']):g}"]
    args += [f"{k}={_literal(v)}" for k, v in sorted(hp.items())]
    args += [f"{k}={_literal(v)}" for k, v in sorted(ts.items())]
    return " ".join(shlex.quote(a) for a in args)


def manifest_roles(manifests: list[tuple[str, dict]], href_of) -> dict:
    """``{run_id: [(text, href)]}``: where each run appears in the folder's sweep manifests."""
    roles: dict = {}
    for name, m in manifests:
        sid, href = m.get("sweep_id") or name, href_of(name)
        selected = (m.get("selected") or {}).get("run_id")
        for t in m.get("trials") or []:
            what = f"trial {t.get('trial')} of stage {t.get('stage')}" + (
                " (selected)" if t.get("run_id") == selected else ""
            )
            roles.setdefault(t.get("run_id"), []).append((f"sweep {sid}: {what}", href))
        for s in m.get("seeds") or []:
            roles.setdefault(s.get("run_id"), []).append(
                (f"sweep {sid}: seed {s.get('seed')} of the selected configuration", href)
            )
        for precision, ids in (m.get("other_precisions") or {}).items():
            for rid in ids or []:
                roles.setdefault(rid, []).append((f"sweep {sid}: the selected configuration in {precision}", href))
    return roles


def _diverged_at(r: dict):
    step = r.get("diverged_step")
    return r.get("steps_completed") if missing(step) else step


def seed_view(r: dict, pts: dict | None, runs_root: str, runs_href: str, roles: list) -> dict:
    """One run's section: its status, finals, command, measurements, provenance, evaluations and raw file."""
    status = text(r.get("status"))
    diverged_at = _diverged_at(r)
    last_step = series.last_finite_step(pts) if status == "diverged" else math.nan

    def final(column):  # the loader's last finite value of each split (``load.final_values``)
        v = r.get(column)
        if status == "diverged":
            last = (
                f"; last finite value {num(v)} at step {int(last_step):,}"
                if not missing(v) and not missing(last_step)
                else ""
            )
            return diverged_text(diverged_at) + last
        return num(v)

    results = [
        ("final train", final("final_train")),
        ("final val", final("final_val")),
        ("final test", final("final_test")),
        ("final test loss", final("final_test_loss")),
        ("steps to target", num(r.get("steps_to_target"), 6)),
        ("time to target", seconds(r.get("time_to_target_s"))),
        ("steps completed", num(r.get("steps_completed"), 8)),
    ]
    warm = warm_start_tag(r.get("warm_start_share"))
    if not missing(r.get("warm_start_share")):  # only optimizers that declare a warm start report it
        shown = num(r.get("warm_start_share"), 3)
        if warm:
            shown += f" ({warm[0]}: above {WARM_START_LIMIT}, the preconditioner is still mostly its initial value)"
        results.append(("final warm-start share", shown))
    meas = [
        ("train time", seconds(r.get("total_train_time_s"))),
        ("eval time", seconds(r.get("total_eval_time_s"))),
        ("setup time", seconds(r.get("setup_time_s"))),
        ("wall time", seconds(r.get("wall_time_s"))),
        ("step time / fused AdamW", ratio(r.get("step_time_ratio_adamw"))),
        ("optimizer step", seconds(r.get("opt_step_time_s"))),
        ("AdamW step", seconds(r.get("adamw_step_time_s"))),
        ("peak memory above baseline", f"{nbytes(r.get('peak_mem_bytes'))} ({text(r.get('peak_mem_kind'))})"),
        ("peak memory total", nbytes(r.get("peak_mem_total_bytes"))),
        (
            "optimizer state",
            f"{nbytes(r.get('opt_state_bytes'))} ({num(r.get('opt_state_bytes_per_param'), 3)} B/param)",
        ),
        ("parameters", num(r.get("n_params"), 12)),
        ("parameter bytes", nbytes(r.get("param_bytes"))),
        ("data source", text(r.get("data_source"))),
        ("data wait share", num(r.get("data_wait_share"), 3)),
    ]
    cfg = _config(r)
    rel = relative(r["path"], runs_root).replace(os.sep, "/")
    rid = str(r["run_id"])
    pretty = text(r.get("config_json"))  # as the runner recorded it (one line; the page wraps it)
    return {
        "run_id": rid,
        "id": anchor("run", rid),
        "seed": text(r.get("seed")),
        "status": status,
        "status_cls": safe_name(status),
        "diverged": diverged_text(diverged_at) if status == "diverged" else "",
        "status_message": "" if missing(r.get("status_message")) else str(r["status_message"]),
        "traceback": "" if missing(r.get("traceback")) else str(r["traceback"]),
        "final_test": final("final_test"),
        "warm_tag": warm,
        "final_val": final("final_val"),
        "parquet_href": f"{runs_href}/{quote(rel)}",
        "parquet_size": nbytes(r.get("file_size")),
        "manifests": roles,
        "reproduce": reproduce(r, cfg),
        "results": results,
        "measurements": meas,
        "provenance": [(k, text(r.get(k))) for k in PROVENANCE if k in r],
        "n_points": len(pts["step"]) if pts else 0,
        "config_json": Markup(html.escape(pretty, quote=False)),
    }  # a text node: quotes need no escaping


def config_view(
    runs: list[dict], curves: dict, root_rel: str, runs_root: str, runs_href: str, roles: dict, with_plot: bool = True
) -> dict:
    """Everything a configuration's page shows: the shared settings, every seed's curves in one figure, a table
    of the seeds and a section per run."""
    from rootbench.leaderboard import plots

    runs = sorted(runs, key=lambda r: (str(r.get("seed")), str(r["run_id"])))
    r0 = runs[0]
    hp = [(k[3:], agg.format_value(v)) for k, v in sorted(r0.items()) if k.startswith("hp_") and not missing(v)]
    ts = [
        (k[5:], agg.format_value(v))
        for k, v in sorted(r0.items())
        if k.startswith("task_") and k != "task_source_hash" and not missing(v)
    ]
    metric = text(r0.get("metric_name"))
    seeds = [
        seed_view(r, curves.get(str(r["run_id"])), runs_root, runs_href, roles.get(str(r["run_id"]), [])) for r in runs
    ]
    counts: dict = {}
    for s in seeds:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    svg = ""
    if with_plot:
        per_seed = {}
        for r in runs:
            cur = series.run_curves(curves.get(str(r["run_id"])), metric)
            if cur:
                div = _diverged_at(r) if str(r.get("status")) == "diverged" else None
                per_seed[f"seed {r.get('seed')}"] = (cur, None if missing(div) else float(div))
        if per_seed:
            svg = Markup(
                plots.run_curves_svg(
                    per_seed,
                    metric,
                    title=f"{r0.get('optimizer')} on {r0.get('task')}, configuration {r0.get('config_id')}",
                )
            )
    tier, task = str(r0.get("tier")), str(r0.get("task"))
    page = f"{root_rel}{task_href(tier, task)}"
    return {
        "task": task,
        "optimizer": text(r0.get("optimizer")),
        "precision": text(r0.get("precision")),
        "config_id": text(r0.get("config_id")),
        "config_label": r0.get("hparams_label") or "defaults",
        "metric_label": f"{metric} ({'higher' if r0.get('higher_is_better') else 'lower'} is better)",
        "target": num(r0.get("target")),
        "task_href": page,
        # what the registry declares (root-free, evaluated weights) is not in the run file: the methodology has it
        "optimizer_href": f"{root_rel}methodology.html#{anchor('opt', r0.get('optimizer'))}",
        "config_href": f"{page}#{anchor('cfg', r0.get('optimizer'), r0.get('config_id'))}",
        "status": " · ".join(f"{n} {k}" for k, n in counts.items()),
        "hparams": hp or [("–", "none recorded")],
        "task_settings": ts or [("–", "none recorded")],
        "family": f"{text(r0.get('family'))} / {text(r0.get('wd_kind'))}",
        "seeds": seeds,
        "curves_svg": svg,
    }

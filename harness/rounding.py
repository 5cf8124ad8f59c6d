"""``rootbench rounding``: how much of a ``bf16-pure`` step rounds away, per state tensor and for the weights.

    rootbench rounding --from-run 8aa7d352727b --steps 200 --every 20   # a stored run's configuration
    rootbench rounding --task shakespeare-char-gpt --opt ifshampoo lr=0.003 lr_cov=0.01 damping=1e-4

Lin et al. (2024) report that the inverse-free methods train in bf16 where Shampoo needs fp32. In
``bf16-pure`` the weights and the optimizer's state are bf16 (7 stored mantissa bits): an entry whose update is
below half its spacing (2^-9 to 2^-8 of its magnitude) keeps its old value. This command trains the run as ``rootbench
bench`` does (the runner's setup and loop, same seed and batches, nothing written) and, at every ``--every``-th
step, also takes the fp32 step from the same state: a copy of the model and the optimizer in fp32 (the state
copied with ``load_state_dict`` and upcast, 16-bit dtype settings made float32, the same random draws),
stepped with the same gradient. Per state entry name (``exp_avg_sq``, ``factor_0`` ...) and for the weights
it reports the share of entries the fp32 step moves, of those the share the bf16 step leaves where they were
("lost"), and the lost entries' share of the fp32 update's squared norm (a small share of entries can carry
most of an update: a Kronecker factor's diagonal next to 1). A lost share near 1 on an entry the method relies
on (a Kronecker factor near the identity, a slow EMA) says the bf16 run is not the method the paper
describes, whatever its final number.
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable

import torch

from rootbench.harness.registry import UsageError
from rootbench.harness.rerun import add_run_arguments, spec_from_args
from rootbench.harness.runner import _Run, flush_denormals, pick_device, seed_everything

WEIGHTS = "(weights)"
SIXTEEN_BIT = ("bfloat16", "float16")  # the optimizers' dtype settings name dtypes as strings


class _Stop(Exception):
    """Raised from the optimizer's step once the last probed step is measured: the loop ends there."""


def check_request(spec, steps: int, every: int) -> None:
    """A bf16-pure run, 1 <= steps <= the run's length, every >= 1; else one ``UsageError`` line."""
    if spec.precision != "bf16-pure":
        raise UsageError(
            f"rounding compares a bf16-pure step with the fp32 step from the same state; this run is {spec.precision}"
        )
    if not (1 <= steps <= spec.tier_config.steps) or every < 1:
        raise UsageError(
            f"--steps must be 1..{spec.tier_config.steps} (the run's length) and --every positive; "
            f"got --steps {steps} --every {every}"
        )


def fp32_kwargs(kwargs: dict) -> dict:
    """The fp32 method's settings: a setting that names a 16-bit dtype for the state (``preconditioner_dtype=
    "bfloat16"`` of a paper variant) names float32 (``"param"`` settings follow the twin's fp32 weights)."""
    return {k: "float32" if isinstance(v, str) and v in SIXTEEN_BIT else v for k, v in kwargs.items()}


def _floating_state(opt: torch.optim.Optimizer) -> dict:
    """{(parameter index, entry name): tensor} of ``opt``'s floating-point state, as ``state_dict`` numbers it."""
    return {
        (i, k): v
        for i, entries in opt.state_dict()["state"].items()
        for k, v in entries.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() > 0 and k != "step"
    }


def _tally(out: dict, name: str, old: torch.Tensor, new16: torch.Tensor, new32: torch.Tensor) -> None:
    """Add one tensor's counts under ``name``: (entries, entries the fp32 step moves, of those the ones the bf16
    step leaves unchanged, the fp32 update's squared norm, the part of it on those entries)."""
    old32 = old.float()
    delta = new32.double() - old32.double()
    moves = delta != 0
    lost = moves & (new16.float() == old32)
    sq = delta.square()
    add = (old.numel(), int(moves.sum()), int(lost.sum()), float(sq.sum()), float(sq[lost].sum()))
    out[name] = tuple(a + b for a, b in zip(out.get(name, (0, 0, 0, 0.0, 0.0)), add))


def compare_step(model, opt, spec, step_real: Callable[[], None]) -> dict:
    """Run the real bf16 step (``step_real``) and the fp32 step from the same state; per state entry name and
    for the weights, the ``_tally`` of the two: {name: (entries, moved by fp32, of those left unchanged by bf16,
    fp32 update's squared norm, its part on those)}."""
    from rootbench.optimizers import create_optimizer

    shadow = copy.deepcopy(model).float()
    for p, q in zip(model.parameters(), shadow.parameters()):
        q.grad = None if p.grad is None else p.grad.detach().float()
    twin = create_optimizer(spec.optimizer_name, shadow, **fp32_kwargs(spec.optimizer_kwargs()))
    # the same state and group settings (lr as scheduled), copied (the real state is never stepped twice) and
    # upcast here: the optimizers keep their state's dtype through load_state_dict
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    for group in twin.param_groups:  # the loaded groups carry the 16-bit settings again
        group.update(fp32_kwargs(group))
    for entries in twin.state.values():
        for k, v in entries.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "step":
                entries[k] = v.float()
    before_state = {k: v.clone() for k, v in _floating_state(opt).items()}
    before_weights = [p.detach().clone() for p in model.parameters()]
    cuda = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    drawn = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in cuda]
    step_real()
    with torch.random.fork_rng(devices=cuda):  # the twin draws what the real step drew (PSGD's probe vectors)
        torch.set_rng_state(drawn[0])  # and the run's random stream goes on as if it had not stepped
        for d, state in zip(cuda, drawn[1]):
            torch.cuda.set_rng_state(state, d)
        twin.step()
    counts: dict = {}
    after16, after32 = _floating_state(opt), _floating_state(twin)
    for key, old in before_state.items():
        if key in after16 and key in after32:
            _tally(counts, key[1], old, after16[key], after32[key])
    for old, p, q in zip(before_weights, model.parameters(), shadow.parameters()):
        if p.requires_grad:
            _tally(counts, WEIGHTS, old, p.detach(), q.detach())
    return counts


class _Probed(_Run):
    """The runner's run; at the probed steps the optimizer's step is taken beside its fp32 twin."""

    def __init__(
        self, *args, probe_steps: list[int], stop_after: int | None = None, on_step: Callable | None = None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.probe_steps, self.on_step = set(probe_steps), on_step
        self.stop_after = max(probe_steps) if stop_after is None else stop_after
        self.measured: list[tuple[int, dict]] = []

    def setup(self) -> None:
        super().setup()
        opt, real_step = self.opt, self.opt.step
        calls = [0]

        def step(*args, **kwargs):
            calls[0] += 1
            if calls[0] in self.probe_steps:
                counts = compare_step(self.model, opt, self.spec, lambda: real_step(*args, **kwargs))
                self.measured.append((calls[0], counts))
                if self.on_step:
                    self.on_step(calls[0], counts)
            else:
                real_step(*args, **kwargs)
            if calls[0] >= self.stop_after:
                raise _Stop  # right after the step: no evaluation (a schedule-free eval() would move the weights)

        opt.step = step  # this instance only: the loop calls it; the fp32 twin is a new optimizer


def probe(spec, steps: int, every: int, on_step: Callable | None = None) -> list[tuple[int, dict]]:
    """Train ``spec`` as the runner does for ``steps`` steps, comparing every ``every``-th step (and the first)
    with its fp32 twin; [(step, counts)] as ``compare_step`` gives them."""
    check_request(spec, steps, every)
    device = pick_device(spec.config.device)
    if spec.config.threads:
        torch.set_num_threads(spec.config.threads)
    seed_everything(spec.seed)
    wanted = sorted({1, *range(every, steps + 1, every)})
    r = _Probed(spec, device, progress=None, probe_steps=wanted, stop_after=steps, on_step=on_step)
    with flush_denormals():  # the arithmetic the runner's run had
        r.setup()
        try:
            r.train()
        except _Stop:
            pass
    return r.measured


def summary(measured: list[tuple[int, dict]]) -> dict:
    """{name: (entries per step, share moved by fp32, share of the moved left unchanged by bf16, their share of
    the fp32 update's squared norm)} over all probed steps; a share with nothing under it is NaN."""
    total: dict = {}
    for _, counts in measured:
        for name, tally in counts.items():
            total[name] = tuple(a + b for a, b in zip(total.get(name, (0, 0, 0, 0.0, 0.0)), tally))

    def share(part, whole):
        return part / whole if whole else math.nan

    k = max(len(measured), 1)
    return {name: (n // k, share(m, n), share(s, m), share(s2, m2)) for name, (n, m, s, m2, s2) in total.items()}


def _share(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def table(rows: dict) -> list[str]:
    lines = [f"  {'state':<22} {'entries':>10} {'fp32 moves':>11} {'lost in bf16':>13} {'of update²':>11}"]
    for name, (n, moved, lost, lost_sq) in sorted(rows.items(), key=lambda kv: (kv[0] != WEIGHTS, kv[0])):
        lines.append(f"  {name:<22} {n:>10} {_share(moved):>11} {_share(lost):>13} {_share(lost_sq):>11}")
    return lines


def cmd_rounding(args) -> int:
    from rootbench.tasks import check_data

    spec = spec_from_args(args, "bf16-pure")
    steps = spec.tier_config.steps if args.steps is None else args.steps
    check_request(spec, steps, args.every)
    check_data(spec.task_name, spec.tier, **spec.config.task_settings)
    print(
        f"rounding {spec.task_name} / {spec.optimizer_name}, tier {spec.tier}, bf16-pure, seed {spec.seed} "
        f"(run id {spec.run_id}): steps 1..{steps}, the fp32 step from the same state every {args.every}",
        flush=True,
    )

    def each(step: int, counts: dict) -> None:
        if args.verbose:
            print(f"step {step}")
            print("\n".join(table(summary([(step, counts)]))), flush=True)

    measured = probe(spec, steps, args.every, on_step=each)
    print(
        f"over {len(measured)} probed steps (shares of entries; lost: of the entries the fp32 step moves, those the "
        "bf16 step leaves as they were; of update²: their share of the fp32 update's squared norm)"
    )
    print("\n".join(table(summary(measured))))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "rounding",
        help="bf16-pure: the share of each state tensor's (and the weights') update that rounds away",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(p)
    p.add_argument("--steps", type=int, default=None, help="train this many steps (default: the whole run)")
    p.add_argument("--every", type=int, default=10, help="compare every N-th step with fp32 (and step 1)")
    p.add_argument("--verbose", action="store_true", help="print each probed step's table too")
    p.set_defaults(func=cmd_rounding)

"""``rootbench eval-weights``: which weights an optimizer's number comes from, when it trains with others.

    rootbench eval-weights --task mnist1d-cnn --opt sfadamw --precision bf16-pure lr=0.0357 momentum=0.53
    rootbench eval-weights --from-run 8aa7d352727b --precision bf16-pure   # a stored run's configuration

An optimizer that declares ``eval_mode`` (schedule-free methods, Defazio et al. 2024) trains one iterate
and evaluates another: the runner calls ``optimizer.eval()`` before each evaluation, which swaps in the
averaged weights, and ``optimizer.train()`` after it. Its recorded metric is the averaged weights' only.
This command trains the same run as ``rootbench bench`` (the runner's loop, same seed and batches, nothing
written) and, at every evaluation, also evaluates the training iterate, before the swap; and it measures
how far the ``eval()`` / ``train()`` round trip moves the parameters (zero in exact arithmetic).
Schedule-free keeps no copy of its averaged weights: ``eval()`` reconstructs them from two tensors, which
in 16-bit parameters are rounded, so a collapse of the recorded metric with a healthy training iterate
points at that reconstruction, not at training.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch

from rootbench.harness.registry import UsageError
from rootbench.harness.rerun import add_run_arguments, spec_from_args
from rootbench.harness.runner import _Run, evaluate, flush_denormals, pick_device, seed_everything

SPLITS = ("val", "test")


class _BothWeights(_Run):
    """The runner's run, evaluating the training iterate too and measuring the swap's round trip."""

    def __init__(self, *args, on_point: Callable | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.points: list[dict] = []
        self.on_point = on_point

    def eval_point(self, step: int, batch_losses: list) -> None:
        metric = self.spec.task.metric
        point = {"step": step}
        for split in SPLITS:  # the training iterate: the parameters as the optimizer steps them
            point[f"train_iterate_{split}"] = evaluate(self.task, self.model, split, self.device, self.spec.precision)[
                metric
            ]
        before = [p.detach().clone() for p in self.model.parameters()]
        n_rows = len(self.rows)
        super().eval_point(step, batch_losses)  # the runner's own evaluation, with eval() / train() around it
        for row in self.rows[n_rows:]:
            if row["split"] in SPLITS and row["metric"] == metric:
                point[f"recorded_{row['split']}"] = row["value"]
        moved = [(p.detach().float() - b.float()).abs().max() for p, b in zip(self.model.parameters(), before)]
        point["round_trip_max_abs"] = float(torch.stack(moved).max()) if moved else 0.0
        self.points.append(point)
        if self.on_point:
            self.on_point(point)


def _require_eval_mode(spec) -> None:
    if not spec.optimizer.eval_mode:
        raise UsageError(
            f"{spec.optimizer_name} does not declare eval_mode: it evaluates the weights it trains, "
            "so there is only one set of weights to report"
        )


def trace(spec, on_point: Callable | None = None) -> dict:
    """Train ``spec`` as the runner does; per evaluation: both weights' metrics and the round trip
    (``on_point(point)`` is called with each as it is measured)."""
    _require_eval_mode(spec)
    device = pick_device(spec.config.device)
    if spec.config.threads:
        torch.set_num_threads(spec.config.threads)
    seed_everything(spec.seed)
    r = _BothWeights(spec, device, progress=None, on_point=on_point)
    with flush_denormals():  # the arithmetic the runner's run had
        r.setup()
        r.train()
    return {"points": r.points, "status": r.cols["status"], "status_message": r.cols["status_message"]}


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def header(spec) -> str:
    return "\n".join(
        [
            f"eval-weights {spec.task_name} / {spec.optimizer_name}, tier {spec.tier}, {spec.precision}, seed "
            f"{spec.seed} (run id {spec.run_id}; {spec.task.metric}; recorded = the runner's number, after "
            "optimizer.eval())",
            f"{'step':>7}  {'train iterate val':>17}  {'test':>7}  {'recorded val':>12}  {'test':>7}  "
            f"{'round trip max |dp|':>19}",
        ]
    )


def row(p: dict) -> str:
    return (
        f"{p['step']:>7}  {_fmt(p.get('train_iterate_val')):>17}  {_fmt(p.get('train_iterate_test')):>7}  "
        f"{_fmt(p.get('recorded_val')):>12}  {_fmt(p.get('recorded_test')):>7}  {p['round_trip_max_abs']:>19.3g}"
    )


def cmd_eval_weights(args) -> int:
    from rootbench.tasks import check_data

    spec = spec_from_args(args, args.precision)
    _require_eval_mode(spec)  # everything that can be wrong fails here, before any training
    pick_device(spec.config.device)
    check_data(spec.task_name, spec.tier, **spec.config.task_settings)
    print(header(spec), flush=True)
    result = trace(spec, on_point=lambda p: print(row(p), flush=True))  # each row as it is measured
    if result["status"] != "ok":
        print(f"run ended {result['status']}: {result['status_message']}")
    return 0


def add_parser(sub) -> None:
    from rootbench.harness.config import PRECISIONS

    p = sub.add_parser(
        "eval-weights",
        help="for an optimizer that evaluates other weights than it trains: both weights' metrics per evaluation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(p)
    p.add_argument("--precision", default=None, choices=PRECISIONS, help="default fp32 (or the stored run's)")
    p.set_defaults(func=cmd_eval_weights)

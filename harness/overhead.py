"""The runner's own cost: its training loop against a bare loop of the same model, data and optimizer.

    python -m rootbench.harness.overhead [--task cifar10-resnet] [--opt sgd] [--steps 60] [--repeats 3]

Both loops build the task, the model (same seed) and the optimizer the same way and draw the same
batches from the same seeded stream, at one torch thread. The bare loop is five lines (batch, zero_grad,
forward + loss, backward, step). The runner's loop adds what a benchmark needs on every step: the
learning-rate schedule, the data-wait clock, the divergence check, the step counter and progress hooks.
Each loop runs ``--repeats`` times, interleaved, and the fastest of each is compared, since load from
other processes only ever slows a loop down. Compared: the runner's train clock (steps 2..N: step 1 is
timed apart as warm-up, evaluations are outside the clock) against the bare loop over the same steps.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from rootbench.harness.config import RunConfig
from rootbench.harness.resolve import resolve_run


def bare_loop(spec, steps: int) -> float:
    """Seconds for optimizer steps 2..``steps`` of the plainest possible training loop."""
    from rootbench.harness.runner import seed_everything
    from rootbench.optimizers import create_optimizer
    from rootbench.tasks import create_task

    seed_everything(spec.seed)
    task = create_task(spec.task_name, spec.tier, **spec.config.task_settings)
    model = task.build_model()
    opt = create_optimizer(spec.optimizer_name, model, **spec.optimizer_kwargs())
    batches = task.train_batches(torch.Generator().manual_seed(spec.seed), torch.device("cpu"))
    model.train()
    t0 = None
    for step in range(1, steps + 1):
        if step == 2:
            t0 = time.perf_counter()
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        task.loss(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def runner_loop(spec) -> float:
    """The runner's train clock for the same steps (``total_train_time_s``: steps 2..N, no evaluation)."""
    from rootbench.harness.runner import run

    rows = run(spec)
    assert rows[0]["status"] == "ok", rows[0]["status_message"]
    return float(rows[0]["total_train_time_s"])


def measure(task: str, opt: str, steps: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    # one evaluation at the end only (evaluations are outside the clock either way), tiny eval splits
    spec = resolve_run(
        task,
        opt,
        RunConfig(
            tier="quick",
            ref_steps=0,
            device="cpu",
            threads=1,
            task_settings={"steps": steps, "eval_every": steps, "eval_examples": 64, "eval_batch_size": 64},
        ),
    )
    runner_s, bare_s = [], []
    for _ in range(repeats):
        runner_s.append(runner_loop(spec))
        bare_s.append(bare_loop(spec, steps))
    return {
        "task": task,
        "optimizer": opt,
        "steps_timed": steps - 1,
        "runner_s": min(runner_s),
        "bare_s": min(bare_s),
        "overhead": min(runner_s) / min(bare_s) - 1.0,
        "threads": 1,
        "load_avg_1min": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="cifar10-resnet")
    ap.add_argument("--opt", default="sgd")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    r = measure(args.task, args.opt, args.steps, args.repeats)
    print(
        f"{r['task']} / {r['optimizer']}, quick tier, {r['steps_timed']} steps, 1 thread, load "
        f"{r['load_avg_1min']:.2f}: runner {r['runner_s']:.3f} s, bare loop {r['bare_s']:.3f} s, "
        f"overhead {100 * r['overhead']:+.1f} %"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The runner: ``run(spec) -> rows``. It owns the training loop and writes no files.

Every optimizer sees the same loop, data order, learning-rate schedule and eval cadence. A run has
three phases, each timed once (airbench's shape): **setup** (task, model, optimizer, the step-time
probe against fused AdamW, the batch stream), **train** (the loop: batch fetch, forward, backward and
optimizer step inside the train clock; evaluations, logging and setup outside it; on CUDA the device is
synchronised before each reading), and **finish** (peak memory, state bytes, run-level columns).

Failures are data: a non-finite loss, or a finite training loss above ``EXPLODE_FACTOR`` times the
first step's loss, ends the run as ``diverged`` (the step is recorded); ``oom``, ``timeout`` and
``error`` runs return the rows measured so far.

Diagnostics: at each evaluation an optimizer that reports ``warm_start_share()`` (the share of its
preconditioner still owed to its initial value) gets rows with split ``optimizer``; after the first step
the runner records whether a declared EMA rate (``OptimizerSpec.ema_rates``) is frozen by rounding in the
state's dtype (``state_frozen``).

``bf16-pure`` on a CPU: the model's matrix products run through fp32 with bf16 semantics (bf16 operands,
fp32 accumulation, one rounding; ``harness.bf16_cpu``), since CPUs without bf16 units run PyTorch's bf16
kernels 10-50x slower; the optimizer's own arithmetic is untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
import traceback
from collections.abc import Callable

import numpy as np
import torch

from rootbench.harness import distributed, measure
from rootbench.harness.bf16_cpu import fp32_accumulation
from rootbench.harness.config import LR_SCHEDULES
from rootbench.harness.provenance import provenance
from rootbench.harness.registry import UsageError
from rootbench.harness.resolve import RunSpec

# A finite loss this many times the first step's loss counts as diverged: far above any loss a
# training run revisits (cross-entropy starts at ln(classes)), far below the 1e17 an exploding run reaches.
EXPLODE_FACTOR = 1e3


# ---------------------------------------------------------------------------------------------
# helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def flushing_denormals() -> bool:
    """Whether this process computes with subnormal floats flushed to zero (x86 FTZ/DAZ)."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@contextlib.contextmanager
def flush_denormals():
    """Flush subnormal floats to zero on the CPU for the run, then restore the process's setting.

    x86 CPUs compute with numbers below 1.2e-38 many times slower, and some configurations drive weights and
    gradients there (a quick GPT RMSProp trial: 130 ms to 3 s per step as a quarter of its weights went
    subnormal), which would put the arithmetic's speed, not the optimizer's, into wall time and
    time-to-target. GPUs and CPUs without the mode are left as they are.
    """
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def pick_device(name: str) -> torch.device:
    if name == "auto" and torch.cuda.is_available() and distributed.launched_by_torchrun():
        return distributed.local_device()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return dev


def lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate before optimizer step ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "multistep":  # decay 10x at 1/3 and 2/3 of the budget, as the paper's CNN runs
        return 0.1 ** sum(step >= m for m in (total // 3, 2 * total // 3))
    raise UsageError(f"unknown lr_schedule {schedule!r}; use {', '.join(LR_SCHEDULES)}")


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _cast_inputs(x, precision: str):
    if precision == "bf16-pure" and torch.is_tensor(x) and x.is_floating_point():
        return x.to(torch.bfloat16)
    return x


def is_oom(e: BaseException) -> bool:
    msg = str(e).lower()
    return (
        isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError))
        or "out of memory" in msg
        or "can't allocate memory" in msg
        or "cannot allocate memory" in msg
    )


@torch.no_grad()
def evaluate(task, model, split: str, device, precision: str) -> dict:
    """Loss and metric of ``model`` (eval mode) on one split: sums over examples / count."""
    was_training = model.training
    model.eval()
    loss_sum, metric_sum, n = 0.0, 0.0, 0
    try:
        for x, y in task.eval_batches(split, device):
            with _autocast(precision, device), fp32_accumulation(precision, device):
                out = model(_cast_inputs(x, precision))
            values = task.metric(out, y)  # per example (per token for language models)
            loss_sum += float(task.loss(out, y)) * values.numel()
            metric_sum += float(values.float().sum())
            n += values.numel()
    finally:
        model.train(was_training)
    values = {"loss": loss_sum / max(n, 1)}
    if task.metric_name != "loss":
        values[task.metric_name] = metric_sum / max(n, 1)
    return values


# ---------------------------------------------------------------------------------------------
# the run


class _Run:
    """The state of one run while it executes; ``rows`` and ``cols`` are what it returns."""

    def __init__(self, spec: RunSpec, device: torch.device, progress: Callable | None):
        self.spec, self.device, self.progress = spec, device, progress
        self.rows: list[dict] = []
        self.cols: dict = {"status": "ok", "status_message": "", "diverged_step": None}
        self.step = 0
        self.train_time = self.eval_time = self.data_wait = 0.0
        self.examples = 0
        self.reached: dict = {}
        self.task = self.model = self.opt = None

    # --------------------------------------------------------------------- recording

    def emit(self, step: int, split: str, metric: str, value: float) -> None:
        n_train = getattr(self.task, "n_train", 0)
        self.rows.append(
            {
                "step": step,
                "epoch": self.examples / n_train if n_train else float("nan"),
                "examples_seen": self.examples,
                "split": split,
                "metric": metric,
                "value": float(value),
                "train_time_s": self.train_time,
                "eval_time_s": self.eval_time,
            }
        )

    def eval_point(self, step: int, batch_losses: list) -> None:
        spec, target = self.spec, self.spec.tier_config.target
        t0 = measure.now(self.device)
        if batch_losses:
            self.emit(step, "train_batch", "loss", float(torch.stack(batch_losses).float().mean()))
        val = {}
        if spec.optimizer.eval_mode:  # declared: it evaluates with other weights (schedule-free's average)
            self.opt.eval()
        try:
            for split in ("train", "val", "test"):
                for metric, value in evaluate(self.task, self.model, split, self.device, spec.precision).items():
                    self.emit(step, split, metric, value)
                    if split == "val":
                        val[metric] = value
        finally:
            if spec.optimizer.eval_mode:
                self.opt.train()
        for metric, value_ in self.warm_start().items():  # how much of the preconditioner is still its start
            self.emit(step, "optimizer", metric, value_)
        value = val.get(spec.task.metric)
        if value is not None and target is not None and not self.reached:
            if (value >= target) if spec.task.higher_is_better else (value <= target):
                self.reached.update(steps_to_target=step, time_to_target_s=self.train_time)
        self.eval_time += measure.now(self.device) - t0
        if self.progress:
            self.progress(step, None, {"eval": val})

    def warm_start(self) -> dict:
        """``warm_start_share`` (and friends) from an optimizer that reports them, else nothing."""
        report = getattr(self.opt, "warm_start_share", None)
        if report is None:
            return {}
        values = {k: float(v) for k, v in (report() or {}).items()}
        if "warm_start_share" in values:
            self.cols["warm_start_share"] = values["warm_start_share"]
        return values

    def check_frozen_state(self) -> None:
        """After the first step (state exists): does 1 - r round to 1 in the state's dtype for a declared EMA
        rate r? Then the preconditioner never decays (bf16 keeps 8 bits: r below ~4e-3 freezes). Warns once
        and records ``state_frozen`` and the reason."""
        import warnings

        dtypes = {
            t.dtype
            for st in self.opt.state.values()
            for t in st.values()
            if torch.is_tensor(t) and t.is_floating_point() and t.numel() > 1
        }
        frozen = []
        for key in self.spec.optimizer.ema_rates:
            rate = self.spec.hparams.get(key)
            if not isinstance(rate, (int, float)) or isinstance(rate, bool):
                continue
            for dt in sorted(dtypes, key=str):
                one = torch.ones((), dtype=dt)
                if bool(one * (1.0 - rate) == one):
                    frozen.append(f"{key}={rate:g}: 1 - {key} rounds to 1 in {str(dt).replace('torch.', '')}")
        self.cols["state_frozen"] = bool(frozen)
        if frozen:
            self.cols["state_frozen_reason"] = "; ".join(frozen)
            warnings.warn(
                f"{self.spec.optimizer_name}: the preconditioner's EMA cannot decay ({'; '.join(frozen)})",
                RuntimeWarning,
                stacklevel=2,
            )

    def diverged(self, step: int, why: str) -> None:
        self.cols.update(status="diverged", diverged_step=step, status_message=why)
        self.emit(step, "train_batch", "loss", float("nan"))

    # --------------------------------------------------------------------- phases

    def setup(self) -> None:
        """Task, model, optimizer, step-time probe and batch stream; everything before the first step."""
        from rootbench.optimizers import create_optimizer
        from rootbench.tasks import create_task

        spec, device = self.spec, self.device
        self.task = create_task(spec.task_name, spec.tier, **spec.config.task_settings)
        self.model = self.task.build_model().to(device)
        if spec.precision == "bf16-pure":
            self.model.to(torch.bfloat16)
        rank, world = distributed.rank_and_world()
        if spec.batch_size % world:
            raise UsageError(f"batch_size {spec.batch_size} does not split over {world} processes")
        self.world = world
        self.train_model = distributed.wrap(self.model)  # DDP under torchrun; the model itself otherwise
        params = [p for p in self.model.parameters() if p.requires_grad]
        kwargs = spec.optimizer_kwargs()
        self.opt = create_optimizer(spec.optimizer_name, self.model, **kwargs)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.cols.update(
            world_size=world,
            n_params=sum(p.numel() for p in params),
            param_bytes=measure.tensor_bytes(params),
            grad_bytes=measure.tensor_bytes(params),
        )  # one gradient per parameter, same dtype
        if spec.config.ref_steps > 0:
            period_key = spec.optimizer.period_hparam
            period = int(spec.hparams.get(period_key, 1)) if period_key else 1
            self.cols.update(
                measure.step_time_ratio(
                    lambda ps: create_optimizer(spec.optimizer_name, ps, **kwargs),
                    params,
                    steps=spec.config.ref_steps,
                    period=max(1, period),
                )
            )
        self.scaler = torch.amp.GradScaler(device.type) if spec.precision == "fp16" else None
        self.batches = self.task.train_batches(torch.Generator().manual_seed(spec.seed), device)
        self.model.train()

    def train(self) -> None:
        """The loop: ``steps`` optimizer steps, evaluations every ``eval_every`` and at the end."""
        spec, device, cfg = self.spec, self.device, self.spec.tier_config
        opt, task, scaler = self.opt, self.task, self.scaler
        loop_start = time.perf_counter()
        self.eval_point(0, [])
        batch_losses: list = []
        skipped = 0
        first_loss = None
        check_every_step = device.type == "cpu"  # CUDA checks at the eval cadence: no host sync per step
        t0 = measure.now(device)
        for step in range(1, cfg.steps + 1):
            factor = lr_factor(cfg.lr_schedule, step - 1, cfg.steps, cfg.warmup_steps)
            for g, lr in zip(opt.param_groups, self.base_lrs):
                g["lr"] = lr * factor
            t_data = time.perf_counter()
            x, y = distributed.shard(*next(self.batches))
            self.data_wait += time.perf_counter() - t_data
            opt.zero_grad(set_to_none=True)
            with _autocast(spec.precision, device), fp32_accumulation(spec.precision, device):
                loss = task.loss(self.train_model(_cast_inputs(x, spec.precision)), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scale_before = scaler.get_scale()
                scaler.step(opt)
                scaler.update()
                skipped += scaler.get_scale() < scale_before  # the scaler skipped a non-finite step
            else:
                loss.backward()
                opt.step()
            self.examples += len(y) * self.world
            self.step = step
            batch_losses.append(distributed.mean(loss.detach()))  # all ranks see the same loss
            last = step == cfg.steps
            if check_every_step or last or step % cfg.eval_every == 0:
                window = batch_losses[-1:] if check_every_step else batch_losses
                values = torch.stack(window).float()
                if first_loss is None:
                    first_loss = float(values[0])
                bad = self._first_bad(values, first_loss)
                if bad is not None:
                    self.train_time += measure.now(device) - t0
                    first_bad = step - len(window) + 1 + bad[0]
                    self.diverged(first_bad, f"{bad[1]} at step {first_bad}")
                    break
            if step == 1:  # the first step pays lazy state allocation and any compilation: its own column
                self.cols["warmup_time_s"] = measure.now(device) - t0
                self.check_frozen_state()
                t0 = measure.now(device)
            if self.progress:
                self.progress(step, cfg.steps, {"loss": loss})
            if last or step % cfg.eval_every == 0:
                self.train_time += measure.now(device) - t0
                self.eval_point(step, batch_losses)
                batch_losses = []
                t0 = measure.now(device)
            limit = spec.config.time_limit
            if limit is not None and distributed.any_rank(time.perf_counter() - loop_start > limit):
                if not last:
                    self.train_time += measure.now(device) - t0
                    if batch_losses:
                        self.eval_point(step, batch_losses)
                    self.cols.update(
                        status="timeout", status_message=f"time limit of {limit:g}s reached after step {step}"
                    )
                break
        self.cols["fp16_skipped_steps"] = skipped

    @staticmethod
    def _first_bad(values: torch.Tensor, first_loss: float) -> tuple[int, str] | None:
        """(index, reason) of the first non-finite or exploded loss in ``values``, or None."""
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            return int((~finite).nonzero()[0]), "non-finite loss"
        if math.isfinite(first_loss) and first_loss > 0:
            exploded = values > EXPLODE_FACTOR * first_loss
            if bool(exploded.any()):
                i = int(exploded.nonzero()[0])
                return i, f"loss {float(values[i]):.3g} exceeds {EXPLODE_FACTOR:g}x the first loss {first_loss:.3g}"
        return None

    def finish(self, peak: measure.PeakMemory | None) -> None:
        """Peak memory above the pre-training baseline, exact optimizer state, the run-level columns."""
        if peak is not None:  # gradients, optimizer state, activations, temporaries
            self.cols.update(
                peak_mem_total_bytes=peak.peak(),
                peak_mem_bytes=max(0, peak.peak() - peak.baseline),
                peak_mem_kind=peak.kind,
                baseline_mem_bytes=peak.baseline,
            )
        if self.opt is not None:
            self.cols["opt_state_bytes"] = measure.optimizer_state_bytes(self.opt)
            n = self.cols.get("n_params") or 0
            self.cols["opt_state_bytes_per_param"] = self.cols["opt_state_bytes"] / n if n else float("nan")
        self.cols.update(
            data_wait_s=self.data_wait,
            data_wait_share=self.data_wait / self.train_time if self.train_time else float("nan"),
            data_source=getattr(self.task, "data_source", ""),
            steps_completed=self.step,
            total_train_time_s=self.train_time,
            total_eval_time_s=self.eval_time,
            steps_to_target=self.reached.get("steps_to_target"),
            time_to_target_s=self.reached.get("time_to_target_s"),
        )


def run(spec: RunSpec, progress: Callable | None = None) -> list[dict]:
    """Train ``spec.optimizer`` on ``spec.task``; return tidy result rows (nothing is written).

    ``progress(step, total, info)`` is called after each step (info holds the last loss) and after
    each evaluation (info holds the validation values).
    """
    t_start = time.perf_counter()
    device = pick_device(spec.config.device)
    if spec.config.threads:
        torch.set_num_threads(spec.config.threads)
    prov = provenance(device)
    seed_everything(spec.seed)
    r = _Run(spec, device, progress)
    peak = None
    try:
        with flush_denormals():
            r.setup()
            peak = measure.PeakMemory(device).start()
            r.cols["setup_time_s"] = time.perf_counter() - t_start
            r.train()
    except Exception as e:  # failures are data: keep what was measured
        if isinstance(e, UsageError) and r.task is None:
            raise
        r.cols.update(
            status="oom" if is_oom(e) else "error",
            status_message=f"{type(e).__name__}: {e}"[:2000],
            traceback=traceback.format_exc()[-4000:],
        )
    r.finish(peak)
    r.cols["wall_time_s"] = time.perf_counter() - t_start
    return assemble(spec, r.rows, r.cols, prov)


def assemble(spec: RunSpec, rows: list[dict], run_cols: dict, prov: dict) -> list[dict]:
    """Add the run-level columns (config, hyperparameters, provenance) to every row."""
    if not rows:  # a failure before the first evaluation still leaves one row to store and show
        rows = [
            {
                "step": run_cols.get("steps_completed", 0),
                "epoch": float("nan"),
                "examples_seen": 0,
                "split": "run",
                "metric": "steps_completed",
                "value": float(run_cols.get("steps_completed", 0)),
                "train_time_s": 0.0,
                "eval_time_s": 0.0,
            }
        ]
    ident = spec.identity
    common = {
        "run_id": spec.run_id,
        "task": spec.task_name,
        "tier": spec.tier,
        "optimizer": spec.optimizer_name,
        "seed": spec.seed,
        "precision": spec.precision,
        **{f"hp_{k}": v for k, v in spec.hparams.items()},
        **{f"task_{k}": v for k, v in ident["task_config"].items()},
        "optimizer_source_hash": ident["optimizer_source"],
        "task_source_hash": ident["task_source"],
        "code_hash": ident["code"],
        "time_limit_s": spec.config.time_limit,
        "config_json": json.dumps(dict(ident), sort_keys=True, default=str),
        "target": spec.tier_config.target,
        "metric_name": spec.task.metric,
        "higher_is_better": spec.task.higher_is_better,
        "batch_size": spec.batch_size,
        "family": spec.optimizer.family,
        "wd_kind": spec.optimizer.wd_kind,
        "status_message": "",
        **run_cols,
        **prov,
    }
    return [{**common, **r} for r in rows]


def failure_rows(spec: RunSpec, status: str, message: str, traceback: str | None = None) -> list[dict]:
    """Rows for a run whose worker died or failed before returning any (e.g. killed by the OOM killer)."""
    cols = {"status": status, "status_message": message}
    if traceback:
        cols["traceback"] = traceback
    try:
        device = pick_device(spec.config.device)
    except UsageError:
        device = torch.device("cpu")
    return assemble(spec, [], cols, provenance(device))

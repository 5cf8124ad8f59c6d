"""The runner: ``run(task, optimizer, config) -> rows``. It owns the training loop and writes no files.

Every optimizer sees the same loop, data order, learning-rate schedule and eval cadence. The train
clock covers batch fetch, forward, backward and the optimizer step; evaluation, logging and setup
are timed separately and never inside it (on CUDA the device is synchronised before each reading).
Failures are data: a non-finite loss ends the run as ``diverged``, and ``oom``, ``timeout`` and
``error`` runs return the rows measured so far.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
import traceback
from typing import Callable

import numpy as np
import torch

from rootbench.harness import distributed, measure
from rootbench.harness.config import RunConfig
from rootbench.harness.records import provenance, run_id
from rootbench.harness.registry import RegistryError, TIERS, dataclass_defaults


# ---------------------------------------------------------------------------------------------
# resolving a config (cheap, no data loaded): used by the CLI to validate before anything runs

def split_overrides(task_name: str, optimizer_name: str, tier: str, overrides: dict) -> tuple[dict, dict]:
    """Sort ``key=value`` overrides into optimizer hyperparameters and task settings."""
    from rootbench.optimizers import get_optimizer_spec
    from rootbench.tasks import get_task_spec

    opt_keys = {k for k in get_optimizer_spec(optimizer_name).defaults if k != "batch_size"}
    if tier not in TIERS:
        raise RegistryError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    task_keys = set(dataclass_defaults(get_task_spec(task_name).tiers[tier]))
    hparams, settings = {}, {}
    for key, value in overrides.items():
        if key in opt_keys:
            hparams[key] = value
        elif key in task_keys:
            settings[key] = value
        else:
            import difflib

            close = difflib.get_close_matches(key, sorted(opt_keys | task_keys), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise RegistryError(
                f"unknown setting {key!r}.{hint} Hyperparameters of {optimizer_name}: {', '.join(sorted(opt_keys))}; "
                f"task settings of {task_name}: {', '.join(sorted(task_keys))}")
    return hparams, settings


def resolve(task_name: str, optimizer_name: str, config: RunConfig) -> dict:
    """The fully resolved, checked identity of a run, and its ``run_id``; raises on bad input."""
    from rootbench.harness.registry import resolve_hparams
    from rootbench.optimizers import get_optimizer_spec
    from rootbench.tasks import resolve_tier

    opt_spec = get_optimizer_spec(optimizer_name)
    hparams = resolve_hparams(opt_spec, config.hparams)
    task_spec, tier_config = resolve_tier(task_name, config.tier, **config.task_settings)
    identity = {
        "task": task_name, "tier": config.tier, "task_config": dataclass_defaults(tier_config),
        "optimizer": optimizer_name, "hparams": hparams, "seed": config.seed, "precision": config.precision,
        "optimizer_source": opt_spec.source_hash, "task_source": task_spec.source_hash,
    }
    if config.time_limit is not None:
        identity["time_limit"] = config.time_limit
    return {"run_id": run_id(identity), "identity": identity, "opt_spec": opt_spec, "task_spec": task_spec,
            "tier_config": tier_config, "hparams": hparams}


# ---------------------------------------------------------------------------------------------
# helpers

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto" and torch.cuda.is_available() and distributed.launched_by_torchrun():
        return distributed.local_device()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RegistryError(f"device {name!r} asked for, but CUDA is not available; use device=cpu")
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
    raise RegistryError(f"unknown lr_schedule {schedule!r}; use constant, cosine or multistep")


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


def _first_nonfinite(losses: list) -> int | None:
    finite = torch.isfinite(torch.stack(losses).float())
    return None if bool(finite.all()) else int((~finite).nonzero()[0])


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(e).lower()


@torch.no_grad()
def evaluate(task, model, split: str, device, precision: str) -> dict:
    """Loss and metric of ``model`` (eval mode) on one split: sums over examples / count."""
    was_training = model.training
    model.eval()
    loss_sum, metric_sum, n = 0.0, 0.0, 0
    try:
        for x, y in task.eval_batches(split, device):
            with _autocast(precision, device):
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

def run(task_name: str, optimizer_name: str, config: RunConfig, progress: Callable | None = None) -> list[dict]:
    """Train ``optimizer_name`` on ``task_name`` under ``config``; return tidy result rows.

    ``progress(step, total, info)`` is called after each step (info holds the last loss) and after
    each evaluation. Bad names or values raise ``RegistryError`` before any training.
    """
    from rootbench.optimizers import create_optimizer
    from rootbench.tasks import create_task

    t_start = time.perf_counter()
    resolved = resolve(task_name, optimizer_name, config)
    opt_spec, task_spec, hparams = resolved["opt_spec"], resolved["task_spec"], resolved["hparams"]
    device = pick_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    prov = provenance(device)
    seed_everything(config.seed)

    rows: list[dict] = []
    run_cols: dict = {"status": "ok", "status_message": "", "diverged_step": None}
    state = {"step": 0, "train_time": 0.0, "eval_time": 0.0, "examples": 0, "data_wait": 0.0}
    target = resolved["tier_config"].target
    higher = task_spec.higher_is_better
    reached: dict = {}
    task = model = opt = None

    def emit(step: int, split: str, metric: str, value: float):
        epoch = state["examples"] / task.n_train if task is not None and task.n_train else float("nan")
        rows.append({"step": step, "epoch": epoch, "examples_seen": state["examples"], "split": split,
                     "metric": metric, "value": float(value), "train_time_s": state["train_time"],
                     "eval_time_s": state["eval_time"]})

    def eval_point(step: int, batch_losses: list):
        t0 = measure.now(device)
        if batch_losses:
            emit(step, "train_batch", "loss", float(torch.stack(batch_losses).float().mean()))
        for split in ("train", "val", "test"):
            for metric, value in evaluate(task, model, split, device, config.precision).items():
                emit(step, split, metric, value)
                if split == "val" and metric == task_spec.metric and target is not None and not reached:
                    if (value >= target) if higher else (value <= target):
                        reached.update(steps_to_target=step, time_to_target_s=state["train_time"])
        state["eval_time"] += measure.now(device) - t0
        if progress:
            progress(step, None, {"eval": {r["metric"]: r["value"] for r in rows[-4:] if r["split"] == "val"}})

    try:
        task = create_task(task_name, config.tier, **config.task_settings)
        cfg = task.config
        model = task.build_model().to(device)
        if config.precision == "bf16-pure":
            model.to(torch.bfloat16)
        rank, world = distributed.rank_and_world()
        if cfg.batch_size % world:
            raise RegistryError(f"batch_size {cfg.batch_size} does not split over {world} processes")
        train_model = distributed.wrap(model)  # DDP under torchrun; the model itself otherwise
        run_cols["world_size"] = world
        params = [p for p in model.parameters() if p.requires_grad]
        extra = {"batch_size": task.batch_size} if opt_spec.needs_batch_size else {}
        opt = create_optimizer(optimizer_name, model, **hparams, **extra)
        base_lrs = [g["lr"] for g in opt.param_groups]
        run_cols.update(n_params=sum(p.numel() for p in params),
                        param_bytes=measure.tensor_bytes(params),
                        grad_bytes=measure.tensor_bytes(params))  # one gradient per parameter, same dtype
        if config.ref_steps > 0:
            period = int(hparams.get("T", 1)) if isinstance(hparams.get("T", 1), int) else 1
            run_cols.update(measure.step_time_ratio(
                lambda ps: create_optimizer(optimizer_name, ps, **hparams, **extra), params,
                steps=config.ref_steps, period=max(1, period)))
        scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
        gen = torch.Generator().manual_seed(config.seed)
        batches = task.train_batches(gen, device)
        model.train()
        peak = measure.PeakMemory(device).start()
        run_cols["setup_time_s"] = time.perf_counter() - t_start
        loop_start = time.perf_counter()

        eval_point(0, [])
        batch_losses: list = []
        skipped = 0
        t0 = measure.now(device)
        for step in range(1, cfg.steps + 1):
            factor = lr_factor(cfg.lr_schedule, step - 1, cfg.steps, cfg.warmup_steps)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * factor
            t_data = time.perf_counter()
            x, y = distributed.shard(*next(batches))
            state["data_wait"] += time.perf_counter() - t_data
            opt.zero_grad(set_to_none=True)
            with _autocast(config.precision, device):
                loss = task.loss(train_model(_cast_inputs(x, config.precision)), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scale_before = scaler.get_scale()
                scaler.step(opt)
                scaler.update()
                skipped += scaler.get_scale() < scale_before  # the scaler skipped a non-finite step
            else:
                loss.backward()
                opt.step()
            state["examples"] += len(y) * world
            state["step"] = step
            batch_losses.append(distributed.mean(loss.detach()))  # all ranks see the same loss
            last = step == cfg.steps
            # CPU checks every step; CUDA checks at the eval cadence to avoid a host sync per step
            if device.type == "cpu" or last or step % cfg.eval_every == 0:
                bad = _first_nonfinite(batch_losses[-1:] if device.type == "cpu" else batch_losses)
                if bad is not None:
                    state["train_time"] += measure.now(device) - t0
                    first_bad = step - (1 if device.type == "cpu" else len(batch_losses)) + 1 + bad
                    run_cols.update(status="diverged", diverged_step=first_bad,
                                    status_message=f"non-finite loss at step {first_bad}")
                    emit(first_bad, "train_batch", "loss", float("nan"))
                    break
            if step == 1:  # the first step pays lazy state allocation and any compilation: its own column
                run_cols["warmup_time_s"] = measure.now(device) - t0
                t0 = measure.now(device)
            if progress:
                progress(step, cfg.steps, {"loss": loss})
            if last or step % cfg.eval_every == 0:
                state["train_time"] += measure.now(device) - t0
                eval_point(step, batch_losses)
                batch_losses = []
                t0 = measure.now(device)
            if config.time_limit is not None and distributed.any_rank(
                    time.perf_counter() - loop_start > config.time_limit):
                if not last:
                    state["train_time"] += measure.now(device) - t0
                    if batch_losses:
                        eval_point(step, batch_losses)
                    run_cols.update(status="timeout", status_message=f"time limit of {config.time_limit:g}s "
                                                                     f"reached after step {step}")
                break
        # peak above the pre-training baseline: gradients, optimizer state, activations, temporaries
        run_cols["peak_mem_total_bytes"] = peak.peak()
        run_cols["peak_mem_bytes"] = max(0, peak.peak() - peak.baseline)
        run_cols["peak_mem_kind"] = peak.kind
        run_cols["baseline_mem_bytes"] = peak.baseline
        run_cols["fp16_skipped_steps"] = skipped
    except Exception as e:  # failures are data: keep what was measured
        if isinstance(e, RegistryError) and task is None:
            raise
        run_cols.update(status="oom" if _is_oom(e) else "error",
                        status_message=f"{type(e).__name__}: {e}"[:2000],
                        traceback=traceback.format_exc()[-4000:])
    if opt is not None:
        run_cols["opt_state_bytes"] = measure.optimizer_state_bytes(opt)
        n = run_cols.get("n_params") or 0
        run_cols["opt_state_bytes_per_param"] = run_cols["opt_state_bytes"] / n if n else float("nan")
    run_cols.update(data_wait_s=state["data_wait"],
                    data_wait_share=state["data_wait"] / state["train_time"] if state["train_time"] else float("nan"),
                    data_source=getattr(task, "data_source", ""))
    run_cols.update(steps_completed=state["step"], total_train_time_s=state["train_time"],
                    total_eval_time_s=state["eval_time"], wall_time_s=time.perf_counter() - t_start,
                    steps_to_target=reached.get("steps_to_target"),
                    time_to_target_s=reached.get("time_to_target_s"))
    return assemble(resolved, config, rows, run_cols, prov)


def assemble(resolved: dict, config: RunConfig, rows: list[dict], run_cols: dict, prov: dict) -> list[dict]:
    """Add the run-level columns (config, hyperparameters, provenance) to every row."""
    if not rows:  # a failure before the first evaluation still leaves one row to store and show
        rows = [{"step": run_cols.get("steps_completed", 0), "epoch": float("nan"), "examples_seen": 0,
                 "split": "run", "metric": "steps_completed", "value": float(run_cols.get("steps_completed", 0)),
                 "train_time_s": 0.0, "eval_time_s": 0.0}]
    ident, task_spec, opt_spec = resolved["identity"], resolved["task_spec"], resolved["opt_spec"]
    common = {
        "run_id": resolved["run_id"], "task": ident["task"], "tier": config.tier, "optimizer": ident["optimizer"],
        "seed": config.seed, "precision": config.precision,
        **{f"hp_{k}": v for k, v in resolved["hparams"].items()},
        **{f"task_{k}": v for k, v in ident["task_config"].items()},
        "optimizer_source_hash": ident["optimizer_source"], "task_source_hash": ident["task_source"],
        "time_limit_s": config.time_limit, "config_json": json.dumps(ident, sort_keys=True, default=str),
        "target": resolved["tier_config"].target, "metric_name": task_spec.metric,
        "higher_is_better": task_spec.higher_is_better, "batch_size": resolved["tier_config"].batch_size,
        "family": opt_spec.family, "wd_kind": opt_spec.wd_kind, "status_message": "",
        **run_cols, **prov,
    }
    return [{**common, **r} for r in rows]


def failure_rows(task_name: str, optimizer_name: str, config: RunConfig, status: str, message: str) -> list[dict]:
    """Rows for a run whose worker died before returning any (e.g. killed by the OOM killer)."""
    resolved = resolve(task_name, optimizer_name, config)
    return assemble(resolved, config, [], {"status": status, "status_message": message},
                    provenance(pick_device(config.device)))

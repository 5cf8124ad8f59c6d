"""Measurements that must survive scrutiny: optimizer-state bytes, peak memory, step-time ratios.

Memory rules: ``tracemalloc`` does not see tensors, so state bytes are
counted from the live tensors the optimizer holds (``opt.state`` and anything kept elsewhere on the
object), deduplicated by storage and excluding parameters and gradients; the CPU peak is the
process high-water mark (reset before training where Linux allows it), the CUDA peak is the
allocator's peak above a post-warm-up baseline.
"""

from __future__ import annotations

import gc
import resource
import time
from typing import Any

import torch

# ---------------------------------------------------------------------------------------------
# state bytes


def _walk_tensors(obj: Any, seen_objs: set, depth: int = 0):
    if depth > 6 or id(obj) in seen_objs:
        return
    seen_objs.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_tensors(k, seen_objs, depth + 1)
            yield from _walk_tensors(v, seen_objs, depth + 1)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            yield from _walk_tensors(v, seen_objs, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.nn.Module)):
        yield from _walk_tensors(vars(obj), seen_objs, depth + 1)


def _storage_key(t: torch.Tensor):
    s = t.untyped_storage()
    return (t.device.type, t.device.index, s.data_ptr())


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Exact persistent bytes of the tensors an optimizer holds, params and grads excluded.

    Walks ``opt.state`` and every attribute of the optimizer object (state kept outside
    ``opt.state``, as SIRFShampoo and Distributed Shampoo do), counting each storage once.
    """
    exclude = set()
    for group in opt.param_groups:
        for p in group["params"]:
            exclude.add(_storage_key(p))
            if p.grad is not None:
                exclude.add(_storage_key(p.grad))
    seen_storages, total = set(), 0
    attrs = {k: v for k, v in vars(opt).items() if k not in ("param_groups", "defaults")}
    for t in _walk_tensors(attrs, set()):
        if t.numel() == 0 and t.untyped_storage().nbytes() == 0:
            continue
        key = _storage_key(t)
        if key in exclude or key in seen_storages:
            continue
        seen_storages.add(key)
        total += t.untyped_storage().nbytes()
    return total


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


# ---------------------------------------------------------------------------------------------
# peak memory


def reset_cpu_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_peak_bytes() -> int:
    """The process RSS high-water mark (VmHWM, else ``ru_maxrss``), in bytes."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def cpu_current_bytes() -> int:
    kib = _status_kib("VmRSS")
    return (kib or 0) * 1024


class PeakMemory:
    """Peak memory of the training phase on ``device`` (CUDA allocator or process RSS)."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            self.resettable = reset_cpu_peak()
            self.baseline = cpu_current_bytes()
        return self

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return cpu_peak_bytes()

    @property
    def kind(self) -> str:
        if self.device.type == "cuda":
            return "cuda_max_allocated"
        return "rss_hwm" if getattr(self, "resettable", False) else "ru_maxrss"


# ---------------------------------------------------------------------------------------------
# clock


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """A clock reading after the device has finished its queued work."""
    sync(device)
    return time.perf_counter()


# ---------------------------------------------------------------------------------------------
# step time relative to fused AdamW, measured side by side in one process


def _clone_params(params, seed: int):
    g = torch.Generator().manual_seed(seed)
    out = []
    for p in params:
        q = p.detach().clone().requires_grad_(True)
        q.grad = (torch.randn(p.shape, generator=g) * 1e-3).to(p.device, p.dtype)
        out.append(q)
    return out


def optimizer_impl(opt) -> str:
    """What ran: an in-house optimizer's ``impl_used``; torch.optim's fused / foreach / forloop."""
    if hasattr(opt, "impl_used"):
        return str(opt.impl_used)
    if type(opt).__module__.split(".")[0] != "torch":
        return "external"
    return "fused" if opt.defaults.get("fused") else "foreach" if opt.defaults.get("foreach") else "forloop"


def step_time_ratio(make_optimizer, params, steps: int = 20, period: int = 1, repeats: int = 3) -> dict:
    """Mean ``opt.step()`` time of ``make_optimizer(params)`` and of fused AdamW on copies of ``params``.

    Both run on the same parameter copies and random gradients, after one untimed step, in
    alternating blocks of whole periods (``period`` steps, for methods with a preconditioner
    update every T steps), so machine noise hits both alike. Returns seconds per step and the ratio,
    plus what the first step cost (lazy state and any ``torch.compile``: ``opt_first_step_time_s``,
    ``opt_compile_time_s``; the run's own first step then finds the kernels compiled) and which
    implementation ran (``opt_impl``, see ``optimizer_impl``). With the
    prototype_log4 schedule the timed steps 1..steps include its every-step warm-up (steps < 16).
    """
    device = params[0].device if params else torch.device("cpu")
    steps = max(period, (steps // period) * period)
    ours_params, ref_params = _clone_params(params, 0), _clone_params(params, 0)
    ours = make_optimizer(ours_params)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    ref = torch.optim.AdamW(ref_params, lr=1e-6, fused=fused or None)
    times = {"ours": [], "ref": []}
    t0 = now(device)
    ours.step()  # untimed first steps: lazy state allocation (and compilation)
    first_step_s = now(device) - t0
    ref.step()
    for _ in range(repeats):
        for key, opt in (("ours", ours), ("ref", ref)):
            t0 = now(device)
            for _ in range(steps):
                opt.step()
            times[key].append((now(device) - t0) / steps)
    ours_s, ref_s = min(times["ours"]), min(times["ref"])
    extra = {
        "opt_first_step_time_s": first_step_s,
        "opt_compile_time_s": float(getattr(ours, "compile_time_s", 0.0)),
        "opt_impl": optimizer_impl(ours),
    }
    del ours, ref, ours_params, ref_params
    gc.collect()
    return {
        "opt_step_time_s": ours_s,
        "adamw_step_time_s": ref_s,
        "step_time_ratio_adamw": ours_s / ref_s if ref_s > 0 else float("nan"),
        **extra,
    }

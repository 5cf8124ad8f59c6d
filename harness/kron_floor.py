"""The Kronecker floor of ``rootbench bench-optim``: the matrix multiplies (and eighs) one period of an
optimizer's steps performs, recorded below autograd and timed alone at the same shapes, so a Kronecker method's
step time is read against what its arithmetic costs here (Lin et al. 2024 count IF-Shampoo's step as matmuls
only; Shampoo adds eigendecompositions)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# aten's matrix multiplies (what matmul, tensordot and einsum decompose into) -> their two operands' positions
GEMM_OPERANDS = {
    "mm": (0, 1),
    "bmm": (0, 1),
    "addmm": (1, 2),
    "addmm_": (1, 2),
    "baddbmm": (1, 2),
    "baddbmm_": (1, 2),
    "addbmm": (1, 2),
    "addbmm_": (1, 2),
    "mv": (0, 1),
    "addmv": (1, 2),
    "addmv_": (1, 2),
    "dot": (0, 1),
    "vdot": (0, 1),
}
EIGH_OPS = ("_linalg_eigh", "linalg_eigh")


def gemm_dims(a: torch.Tensor, b: torch.Tensor) -> tuple:
    """(batch, m, k, n, dtype) of a @ b for 1-D, 2-D and batched 3-D operands."""
    batch = a.shape[0] if a.dim() == 3 else 1
    return batch, a.shape[-2] if a.dim() >= 2 else 1, a.shape[-1], b.shape[-1] if b.dim() >= 2 else 1, a.dtype


class GemmRecorder(TorchDispatchMode):
    """Records what runs below autograd: every matrix multiply (batch, m, k, n, dtype), the input of every eigh
    (a copy, as a batch of matrices) and the count of aten ops."""

    def __init__(self):
        super().__init__()
        self.gemms, self.eighs, self.ops = [], [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops += 1
        if name in GEMM_OPERANDS:
            i, j = GEMM_OPERANDS[name]
            self.gemms.append(gemm_dims(args[i], args[j]))
        elif name in EIGH_OPS:  # kept: eigh's time depends on the matrices (their spectrum), not only on the shape
            self.eighs.append(args[0].detach().clone().reshape(-1, args[0].shape[-2], args[0].shape[-1]))
        return func(*args, **(kwargs or {}))

    @property
    def flops(self) -> int:
        return sum(2 * b * m * k * n for b, m, k, n, _ in self.gemms)


def _best_time(fn, min_run_time: float, repeats: int = 1) -> float:
    from torch.utils.benchmark import Timer

    timer = Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return min(timer.blocked_autorange(min_run_time=min_run_time).median for _ in range(repeats))


def gemm_replay(gemms: list, device="cpu"):
    """A function that runs ``gemms`` as one ``bmm`` per distinct (m, k, n, dtype), batching every multiply of that
    shape (random operands, on ``device``): their time is the multiplies' floor at the best batching the shapes
    allow."""
    batches: dict = {}
    for b, m, k, n, dt in gemms:
        batches[(m, k, n, dt)] = batches.get((m, k, n, dt), 0) + b
    g = torch.Generator().manual_seed(0)
    work = [
        (
            torch.randn(b, m, k, generator=g).to(device=device, dtype=dt),
            torch.randn(b, k, n, generator=g).to(device=device, dtype=dt),
            torch.empty(b, m, n, dtype=dt, device=device),
        )
        for (m, k, n, dt), b in batches.items()
    ]

    def run():
        for A, B, C in work:
            torch.bmm(A, B, out=C)

    return run


def eigh_replay(eighs: list):
    """A function that decomposes the recorded matrices again, one batched ``torch.linalg.eigh`` per distinct
    (d, dtype)."""
    batches: dict = {}
    for A in eighs:
        batches.setdefault((A.shape[-1], A.dtype), []).append(A)
    work = [torch.cat(As) for As in batches.values()]
    return lambda: [torch.linalg.eigh(A) for A in work]


_OVERHEAD: dict = {}


def call_overheads(min_run_time: float, device="cpu") -> dict:
    """Seconds of one ``bmm`` call on 1x1 matrices and of one tiny elementwise op (``add`` on one element,
    ``out=``): what every call costs before any arithmetic (measured once per process, device and thread count;
    on CUDA a launch and its completion)."""
    key = (torch.get_num_threads(), str(device))
    if key not in _OVERHEAD:
        ones, empty = (lambda *s: torch.ones(*s, device=device)), (lambda *s: torch.empty(*s, device=device))
        a, c, x, y = ones(1, 1, 1), empty(1, 1, 1), ones(1), empty(1)
        _OVERHEAD[key] = {
            "gemm_call_s": _best_time(lambda: torch.bmm(a, a, out=c), min_run_time, repeats=3),
            "op_call_s": _best_time(lambda: torch.add(x, x, out=y), min_run_time, repeats=3),
        }
    return _OVERHEAD[key]


def declared_matmul_flops(opt, T: int) -> float:
    """The optimizer's own analytic count (``opt.matmul_flops()`` -> {"update", "regular"} FLOPs of one step)
    amortised over a period of T steps with one update; NaN when it declares none."""
    count = getattr(opt, "matmul_flops", None)
    if not callable(count):
        return float("nan")
    c = count()
    return (c["update"] + (T - 1) * c["regular"]) / T


@dataclass
class Floor:
    """What one whole period of an optimizer's steps ran (``GemmRecorder``), replayable alone; ``gemm_s`` and
    ``eigh_s`` collect the replays' times per period, one per timing round."""

    T: int
    rec: GemmRecorder
    analytic: float
    gemm: Callable
    eigh: Callable | None
    gemm_s: list = field(default_factory=list)
    eigh_s: list = field(default_factory=list)
    device: str = "cpu"

    def time(self, min_run_time: float) -> None:
        self.gemm_s.append(_best_time(self.gemm, min_run_time) if self.rec.gemms else 0.0)
        if self.eigh is not None:
            self.eigh_s.append(_best_time(self.eigh, min_run_time))


def record_floor(opt, T: int) -> Floor:
    """Record one whole period (T steps: one preconditioner update under a strict schedule), after one period
    untimed: past a warm-up such as Shampoo's (no roots before step T), the period is the steady state."""
    for _ in range(T):
        opt.step()
    device = opt.param_groups[0]["params"][0].device
    rec = GemmRecorder()
    with rec:
        for _ in range(T):
            opt.step()
    return Floor(
        T,
        rec,
        declared_matmul_flops(opt, T),
        gemm_replay(rec.gemms, device),
        eigh_replay(rec.eighs) if rec.eighs else None,
        device=str(device),
    )


def floor_columns(floor: Floor, step_times: list, min_run_time: float) -> dict:
    """Per step, amortised over the period: ``gemm_flops`` (what ran) next to ``gemm_flops_analytic`` (declared),
    the GEMM throughput at these shapes and dtypes, ``gemm_floor_s`` = FLOPs / throughput, ``eigh_floor_s``;
    ``achieved`` = (GEMM + eigh floor) / step time, the median over rounds of the ratio of a round's replays to
    that round's step time (both timed back to back); the per-call floors (calls x the cost of an empty call)
    say when tiny factors make overhead the floor."""
    T, rec = floor.T, floor.rec
    gemm_s = [t / T for t in floor.gemm_s]
    eigh_s = [t / T for t in floor.eigh_s] or [0.0] * len(gemm_s)
    over = call_overheads(min_run_time / 2, floor.device)
    calls, ops = len(rec.gemms) / T, rec.ops / T
    med_gemm = statistics.median(gemm_s)
    return {
        "gemm_flops": rec.flops / T,
        "gemm_flops_analytic": floor.analytic,
        "gemm_dtypes": ",".join(sorted({str(g[-1]).replace("torch.", "") for g in rec.gemms})),
        "gemm_GFLOPs": rec.flops / T / med_gemm / 1e9 if med_gemm > 0 else float("nan"),
        "gemm_floor_s": med_gemm,
        "eigh_floor_s": statistics.median(eigh_s) if floor.eigh_s else float("nan"),
        "eigh_calls": len(rec.eighs) / T,
        "eigh_matrices": sum(A.shape[0] for A in rec.eighs) / T,
        "achieved_gemm": statistics.median(g / t for g, t in zip(gemm_s, step_times, strict=True)),
        "achieved": statistics.median((g + e) / t for g, e, t in zip(gemm_s, eigh_s, step_times, strict=True)),
        "gemm_calls": calls,
        "aten_ops": ops,
        **over,
        "gemm_call_floor_s": calls * over["gemm_call_s"],
        "op_call_floor_s": ops * over["op_call_s"],
    }


FLOOR_COLUMNS = (
    "gemm_flops",
    "gemm_flops_analytic",
    "gemm_GFLOPs",
    "gemm_floor_s",
    "eigh_floor_s",
    "eigh_calls",
    "eigh_matrices",
    "achieved_gemm",
    "achieved",
    "gemm_calls",
    "aten_ops",
    "gemm_call_s",
    "op_call_s",
    "gemm_call_floor_s",
    "op_call_floor_s",
)

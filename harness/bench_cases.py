"""What ``rootbench bench-optim`` times (module doc of ``harness/bench_optim.py``): the cases and their entries, the
external reference optimizer, and how each entry's parameters, gradients and optimizer are built (shared by the
timing process and the peak-memory subprocesses). How a method is treated follows what it declares
(``OptimizerSpec.preconditioner``, ``period_hparam``, ``needs_batch_size``), never its name."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from rootbench.harness.registry import UsageError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DTYPE_KNOBS = {"fp32": "float32", "bf16": "bfloat16"}
BATCH_SIZE = 128  # B for the root-free methods (the examples a loss is averaged over)
# Kronecker methods run at SIRFShampoo's defaults, so IF-Shampoo and the authors' package are timed in one
# configuration; each method gets those of these (conventional) hyperparameter names it has
KRON_HP = dict(lr=1e-3, lr_cov=1e-2, momentum=0.9, riemannian_momentum=0.5, damping=1e-3)
# a strict period of T steps (IF-Shampoo's default warm-up updates more often early on, so the blocks
# of T steps would not be whole periods)
PERIODIC_HP = dict(schedule="every_T")
FACTOR_DTYPE_HPARAM = "preconditioner_dtype"  # the conventional knob for the dtype of Kronecker factors


# ---------------------------------------------------------------------------------------------
# optimizers benchmarked for reference but not registered


@dataclass(frozen=True)
class ExternalOptimizer:
    """An optimizer from an installed package, benchmarked for reference but not registered. It declares the
    capabilities an ``OptimizerSpec`` declares, so every code path here treats it through them; ``factory``
    takes (name, parameter) pairs and hyperparameters in rootbench's names (``defaults``)."""

    name: str
    package: str  # must be importable to use this entry
    factory: Callable
    defaults: dict
    preconditioner: str
    period_hparam: str | None = None
    needs_batch_size: bool = False
    family: str = "other"

    def available(self) -> bool:
        return importlib.util.find_spec(self.package) is not None


SIRF_NAMES = {
    "lr_cov": "beta2",
    "momentum": "alpha1",
    "riemannian_momentum": "alpha2",
    "damping": "lam",
    "weight_decay": "kappa",
    "preconditioner_dtype": "preconditioner_dtypes",
}  # rootbench -> SIRFShampoo
TORCH_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}


def _sirfshampoo(named: list, **hparams):
    """SIRFShampoo (the authors' package) on ``named`` parameters, held by a module as its API needs."""
    import sirfshampoo

    holder = torch.nn.Module()
    for i, (_, p) in enumerate(named):
        holder.register_parameter(f"p{i}", p)
    hp = {SIRF_NAMES.get(k, k): v for k, v in hparams.items()}
    dtype = hp.get("preconditioner_dtypes", "param")
    if dtype != "param" and dtype not in TORCH_DTYPES:
        raise UsageError(f"sirfshampoo: preconditioner_dtype={dtype!r}; valid: param, {', '.join(TORCH_DTYPES)}")
    hp["preconditioner_dtypes"] = None if dtype == "param" else TORCH_DTYPES[dtype]  # None: the parameters' dtype
    return sirfshampoo.SIRFShampoo(holder, **hp)


EXTERNAL = {
    "sirfshampoo": ExternalOptimizer(
        "sirfshampoo",
        "sirfshampoo",
        _sirfshampoo,
        preconditioner="kronecker",
        period_hparam="T",
        needs_batch_size=True,
        family="shampoo",
        defaults={**KRON_HP, "weight_decay": 0.0, "T": 1, "preconditioner_dtype": "param", "structures": "dense"},
    ),
}


def capabilities(name: str):
    """What ``name`` declares (preconditioner, period_hparam, needs_batch_size, defaults): its ``OptimizerSpec``,
    or the external reference entry of that name. Unknown names raise ``UsageError`` with close matches."""
    if name in EXTERNAL:
        return EXTERNAL[name]
    from rootbench.optimizers import get_optimizer_spec

    return get_optimizer_spec(name)


def kronecker(name: str) -> bool:
    return capabilities(name).preconditioner == "kronecker"


# ---------------------------------------------------------------------------------------------
# cases


@dataclass
class Entry:
    """One optimizer configuration in a case; ``T`` (the value of its ``period_hparam``) set for periodic methods."""

    name: str
    hparams: dict = field(default_factory=dict)
    T: int | None = None
    baseline: str | None = None  # the label of the entry it is compared with
    param_dtype: str | None = None  # overrides the case's choice (fused AdamW in Kronecker cases: fp32)

    @property
    def label(self) -> str:
        bits = [f"{k}={v}" for k, v in sorted(self.hparams.items())]
        return self.name + (f"[{','.join(bits)}]" if bits else "") + (f" T={self.T}" if self.T else "")


@dataclass
class Case:
    """Parameters (``shapes``, or the fixed ``mlp512`` model) at one dtype and the entries timed on them."""

    name: str
    dtype: str
    entries: list
    shapes: list = field(default_factory=list)
    model: str | None = None  # "mlp512": Linear(512, 512) -> tanh -> Linear(512, 512), gradients of a batch of 128
    names: list = field(default_factory=list)  # parameter names for ``shapes`` (a task's model); default p0, p1, ...
    task: str | None = None  # the task whose quick-tier model gave ``shapes`` (``--task``)
    device: str = "cpu"  # where parameters, gradients, state and the probes live (``--device``)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "entries": [asdict(e) for e in self.entries]})

    @staticmethod
    def from_json(blob: str) -> Case:
        d = json.loads(blob)
        d["entries"] = [Entry(**e) for e in d["entries"]]
        return Case(**d)


def default_suite() -> list:
    """The acceptance cases: diagonal methods at the traffic floor, IF-Shampoo vs the authors' package,
    IF-Shampoo (bf16) vs Shampoo (fp32, eigh) on one 1024x1024 weight."""
    cases = []
    for dt in ("fp32", "bf16"):  # 16 x 1024^2 = 16.8M parameters; rfrmsprop with momentum, like AdamW's two buffers
        cases.append(
            Case(
                f"diag-16x1024x1024-{dt}",
                dt,
                shapes=[[1024, 1024]] * 16,
                entries=[Entry("rfadamw"), Entry("rfrmsprop", {"momentum": 0.9}), Entry("sgd", {"impl": "fused"})],
            )
        )
    have_sirf = EXTERNAL["sirfshampoo"].available()
    for dt in ("fp32", "bf16"):
        entries = []
        for T in (1, 10):
            sirf = Entry("sirfshampoo", T=T)
            entries.append(Entry("ifshampoo", T=T, baseline=sirf.label if have_sirf else None))
            if have_sirf:
                entries.append(sirf)
        cases.append(Case(f"mlp512-b128-{dt}", dt, model="mlp512", entries=entries))
    shampoo = Entry("shampoo", {"preconditioner_dtype": "float32"}, T=1)
    cases.append(
        Case(
            "square1024-ifbf16-vs-shampoo-fp32",
            "bf16",
            shapes=[[1024, 1024]],
            entries=[Entry("ifshampoo", T=1, baseline=shampoo.label), shampoo],
        )
    )
    return cases


# ---------------------------------------------------------------------------------------------
# building parameters and optimizers (shared by the parent and the peak-memory subprocesses)


def param_dtype(case: Case, entry: Entry) -> torch.dtype:
    """fp32 parameters for Kronecker methods (``--dtype`` is their factor dtype), else the case's dtype."""
    if entry.param_dtype:
        return DTYPES[entry.param_dtype]
    return torch.float32 if kronecker(entry.name) else DTYPES[case.dtype]


def build_params(case: Case, dtype: torch.dtype, seed: int = 0) -> list:
    """(name, parameter with .grad) pairs; the same values for every call with the same arguments."""
    g = torch.Generator().manual_seed(seed)
    if case.model == "mlp512":
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.Tanh(), torch.nn.Linear(512, 512))
        x = torch.randn(BATCH_SIZE, 512, generator=g)
        model(x).square().mean().backward()  # a mean over the batch, as the root-free methods assume
        named = [
            (f"mlp.{n}", torch.nn.Parameter(p.detach().to(device=case.device, dtype=dtype)))
            for n, p in model.named_parameters()
        ]
        for (_, q), p in zip(named, model.parameters()):
            q.grad = p.grad.to(device=case.device, dtype=dtype)
        return named
    named = []
    for i, shape in enumerate(case.shapes):
        p = torch.nn.Parameter((torch.randn(shape, generator=g) * 0.02).to(device=case.device, dtype=dtype))
        p.grad = (torch.randn(shape, generator=g) * 1e-3).to(device=case.device, dtype=dtype)
        named.append((case.names[i] if case.names else f"p{i}", p))
    return named


def benchmark_hparams(case: Case, entry: Entry) -> dict:
    """The hyperparameters ``entry`` runs with: for Kronecker methods ``KRON_HP`` and the factor dtype, for
    periodic ones the period (``period_hparam`` = T) and a strict schedule, then the entry's own; only those the
    method has, plus B where it declares it needs one."""
    caps = capabilities(entry.name)
    hp = {}
    if caps.preconditioner == "kronecker":
        hp = dict(KRON_HP, momentum_dtype="param")  # the momentum buffer follows the (fp32) parameters
        hp[FACTOR_DTYPE_HPARAM] = DTYPE_KNOBS[case.dtype]
    if entry.T is not None:
        if caps.period_hparam is None:
            raise UsageError(f"{entry.name} declares no preconditioner period; it cannot run at T={entry.T}")
        hp.update(PERIODIC_HP)
        hp[caps.period_hparam] = entry.T
    hp.update(entry.hparams)
    hp = {k: v for k, v in hp.items() if k in caps.defaults}
    if caps.needs_batch_size:
        hp["batch_size"] = BATCH_SIZE
    return hp


def build_optimizer(case: Case, entry: Entry, named: list):
    """The optimizer of ``entry`` on ``named`` parameters (--dtype mapped onto its dtype knobs)."""
    from rootbench.optimizers import create_optimizer

    hp = benchmark_hparams(case, entry)
    if entry.name in EXTERNAL:
        return EXTERNAL[entry.name].factory(named, **hp)
    return create_optimizer(entry.name, named, **hp)


def traffic_floor(opt, named: list, diagonal: bool) -> float:
    """Bytes read + written per parameter by one fused pass of a diagonal method: p (read, write),
    g (read) and every parameter-sized state tensor (read, write); NaN for Kronecker methods."""
    if not diagonal:
        return float("nan")
    total = 0
    n = 0
    for _, p in named:
        state = opt.state.get(p, {})
        tensors = [v for v in state.values() if torch.is_tensor(v) and v.numel() > 1]
        if any(v.numel() != p.numel() for v in tensors):
            return float("nan")
        total += p.numel() * (2 * p.element_size() + p.grad.element_size() + sum(2 * v.element_size() for v in tensors))
        n += p.numel()
    return total / n if n else float("nan")

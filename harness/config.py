"""Run configuration: one frozen dataclass and flat ``key=value`` overrides (no Hydra, no exec)."""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field

from rootbench.harness.registry import RegistryError

PRECISIONS = ("fp32", "bf16", "bf16-pure", "fp16")
LR_SCHEDULES = ("constant", "cosine", "multistep")  # what a tier's lr_schedule may be (applied by the runner)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run besides the task and optimizer names.

    ``hparams`` override the optimizer's registered defaults; ``task_settings`` override fields
    of the task's tier config. Both are checked (unknown keys and wrong types raise).
    """

    tier: str = "quick"
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 (autocast) | bf16-pure (params, grads, state bf16) | fp16 (+scaler)
    hparams: dict = field(default_factory=dict)
    task_settings: dict = field(default_factory=dict)
    time_limit: float | None = None  # seconds of training loop (train + eval); status "timeout" past it
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    ref_steps: int = 20  # optimizer steps timed against fused AdamW at the start (0: skip)
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise RegistryError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise RegistryError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise RegistryError(f"time_limit must be positive seconds, got {self.time_limit!r}")
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device):
            raise RegistryError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")
        if not isinstance(self.ref_steps, int) or self.ref_steps < 0:
            raise RegistryError(f"ref_steps must be a non-negative integer, got {self.ref_steps!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise RegistryError(f"threads must be a positive integer, got {self.threads!r}")

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)


def parse_overrides(items: list[str]) -> dict:
    """``["lr=1e-3", "impl='fused'", "nesterov=True"]`` -> dict, values parsed as Python literals.

    A bare word that is not a literal (``impl=fused``) is taken as a string.
    """
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise RegistryError(f"cannot parse {item!r}: overrides are key=value, e.g. lr=3e-4")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            if raw.replace("_", "").replace("-", "").isalnum() and not raw[:1].isdigit():
                value = raw  # a bare word: impl=fused
            else:
                raise RegistryError(f"cannot parse the value of {key}: {raw!r} is not a Python literal") from None
        out[key] = value
    return out

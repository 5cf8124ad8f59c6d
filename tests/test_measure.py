"""Memory and state-byte measurement."""

import torch

from rootbench.harness import measure
from rootbench.harness.config import RunConfig


class HoldsStateOutside(torch.optim.SGD):
    """Keeps a tensor outside ``opt.state`` (as SIRFShampoo and Distributed Shampoo do)."""

    def __init__(self, params):
        super().__init__(params, lr=0.1, momentum=0.9)
        self.preconditioners = {"L": [torch.zeros(7, 7)], "view_of_L": None}
        self.preconditioners["view_of_L"] = self.preconditioners["L"][0][0]  # a view: counted once


def test_state_bytes_count_state_outside_opt_state_once_and_exclude_params_and_grads():
    w = torch.nn.Parameter(torch.randn(5, 3))
    opt = HoldsStateOutside([w])
    assert measure.optimizer_state_bytes(opt) == 7 * 7 * 4
    w.grad = torch.randn(5, 3)
    opt.step()  # momentum buffer: one fp32 copy of w
    assert measure.optimizer_state_bytes(opt) == 7 * 7 * 4 + 15 * 4


def test_state_bytes_of_a_bf16_adamw_are_half_of_fp32():
    def state_of(dtype):
        w = torch.nn.Parameter(torch.randn(64, 32, dtype=dtype))
        w.grad = torch.randn_like(w)
        opt = torch.optim.AdamW([w], foreach=False)
        opt.step()
        return measure.optimizer_state_bytes(opt) - opt.state[w]["step"].untyped_storage().nbytes()

    assert state_of(torch.float32) == 2 * 64 * 32 * 4
    assert state_of(torch.bfloat16) == 2 * 64 * 32 * 2


def test_peak_memory_is_positive_and_grows_with_the_batch_size():
    """Each run in its own worker process, so each high-water mark is its own."""
    from rootbench.harness.execute import run_in_worker
    from rootbench.harness.resolve import resolve_run

    def peak(batch_size):
        cfg = RunConfig(
            tier="smoke",
            ref_steps=0,
            task_settings={"batch_size": batch_size, "width": 1024, "steps": 4, "eval_every": 4},
        )
        rows = run_in_worker(resolve_run("mnist1d-mlp", "sgd", cfg))
        assert rows[0]["status"] == "ok", rows[0]["status_message"]
        return rows[0]["peak_mem_bytes"]

    small, large = peak(16), peak(1200)
    assert small > 0
    # activations of 1200 x 1024 floats per layer: tens of MiB more than at batch 16
    assert large > small + 8 * 2**20

"""Shampoo keeps its previous inverse root when eigh fails (Distributed Shampoo's behaviour), for both impls."""

import pytest
import torch

from rootbench.optimizers import create_optimizer


@pytest.mark.parametrize("impl", ["reference", "batched"])
def test_failed_eigh_keeps_the_previous_root_and_counts_it(impl, monkeypatch):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = create_optimizer("shampoo", [w], lr=0.1, T=1, impl=impl)
    w.grad = torch.randn(4, 3)
    opt.step()  # roots computed normally
    roots = [opt.state[w][f"root_{k}"].clone() for k in range(2)]
    assert opt.state[w].get("root_failures", 0) == 0

    def failing_eigh(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", failing_eigh)
    w.grad = torch.randn(4, 3)
    before = w.detach().clone()
    with pytest.warns(RuntimeWarning, match="keeping the previous root"):
        opt.step()
    assert opt.state[w]["root_failures"] == 2  # both factors
    for k in range(2):
        torch.testing.assert_close(opt.state[w][f"root_{k}"], roots[k], rtol=0, atol=0)
    assert torch.isfinite(w).all() and not torch.equal(w, before)  # it still stepped, with the old roots


def test_a_failure_before_any_root_uses_the_identity(monkeypatch):
    w = torch.nn.Parameter(torch.randn(3, 2))
    opt = create_optimizer("shampoo", [w], lr=0.1, momentum=0.0, T=1, impl="reference")
    monkeypatch.setattr(torch.linalg, "eigh", lambda *a, **k: (_ for _ in ()).throw(torch.linalg.LinAlgError("x")))
    w.grad = torch.ones(3, 2)
    before = w.detach().clone()
    with pytest.warns(RuntimeWarning):
        opt.step()
    torch.testing.assert_close(w.detach(), before - 0.1 * torch.ones(3, 2))  # the plain step

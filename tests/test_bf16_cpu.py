"""bf16 products on the CPU through fp32 (``harness.bf16_cpu``): bf16 semantics, one rounding, native forward."""

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F

from rootbench.harness.bf16_cpu import Fp32Accumulation, fp32_accumulation


def _bf16(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).bfloat16()


PRODUCTS = {
    "linear": (lambda a, b: F.linear(a, b), (64, 48), (32, 48)),
    "conv2d": (lambda a, b: F.conv2d(a, b, padding=1), (4, 8, 10, 10), (6, 8, 3, 3)),
    "matmul": (lambda a, b: a @ b, (3, 20, 24), (24, 16)),
    "bmm": (torch.bmm, (3, 20, 24), (3, 24, 16)),
}


@pytest.mark.parametrize("name", sorted(PRODUCTS))
def test_products_and_their_gradients_are_the_exact_result_rounded_once(name):
    """bf16 in, fp32 accumulation, one rounding to bf16: forward and both gradients are the float64 result of
    the same bf16 operands, rounded to bf16 (up to fp32 summation order: a rare last-bit difference)."""
    f, sa, sb = PRODUCTS[name]
    a, b = _bf16(*sa, seed=1), _bf16(*sb, seed=2)

    def run(dtype, mode):
        x, w = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
        with mode:
            out = f(x, w)
        g = _bf16(*out.shape, seed=3).to(dtype)
        out.backward(g)
        return out.detach(), x.grad, w.grad

    exact = run(torch.float64, contextlib.nullcontext())
    emulated = run(torch.bfloat16, Fp32Accumulation())
    for e, x in zip(exact, emulated, strict=True):
        assert x.dtype == torch.bfloat16
        assert (x == e.bfloat16()).float().mean() >= 0.99
    native_out = f(a, b)
    assert (native_out == emulated[0]).float().mean() >= 0.99  # PyTorch's bf16 kernels: the same forward


def test_only_cpu_bf16_operands_are_widened_and_mixed_dtypes_still_fail():
    x32, w32 = torch.randn(4, 3), torch.randn(5, 3)
    with Fp32Accumulation():
        assert F.linear(x32, w32).dtype == torch.float32  # fp32 runs are untouched
        with pytest.raises(RuntimeError):  # as without the mode: a dtype mismatch is an error, not a widening
            F.linear(x32.bfloat16(), w32)
        assert torch.equal(torch.relu(x32.bfloat16()), torch.relu(x32).bfloat16())  # not a product: as is


def test_the_mode_is_for_bf16_runs_on_the_cpu_only():
    for precision in ("bf16-pure", "bf16"):
        assert isinstance(fp32_accumulation(precision, torch.device("cpu")), Fp32Accumulation)
    for precision, device in (("fp32", "cpu"), ("fp16", "cpu"), ("bf16-pure", "cuda"), ("bf16", "cuda")):
        assert not isinstance(fp32_accumulation(precision, torch.device(device)), Fp32Accumulation)


def test_a_model_step_matches_the_native_bf16_step_far_closer_than_fp32_does():
    """A small ViT in bf16: the loss and gradients under the mode sit within rounding of PyTorch's native bf16
    kernels, at least 10x closer than the same model in fp32 is."""
    from rootbench.tasks.cifar import VitConfig, vit_model

    torch.manual_seed(0)
    model = vit_model(
        10,
        VitConfig(
            steps=1, batch_size=1, eval_every=1, embed_dim=32, depth=2, num_heads=2, drop_path=0.0, image_size=16
        ),
    )
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))

    def grads(m, inputs, mode):
        m.zero_grad()
        with mode:
            F.cross_entropy(m(inputs).float(), y).backward()
        return torch.cat([p.grad.float().flatten() for p in m.parameters()])

    g32 = grads(model, x, contextlib.nullcontext())
    bf = copy.deepcopy(model).bfloat16()
    native, emulated = grads(bf, x.bfloat16(), contextlib.nullcontext()), grads(bf, x.bfloat16(), Fp32Accumulation())
    assert (emulated - native).norm() * 10 < (native - g32).norm()


@pytest.mark.parametrize("name", sorted(PRODUCTS))
def test_under_autocast_fp32_operands_give_autocasts_bf16_product_and_fp32_gradients(name):
    """``bf16`` runs: CPU autocast casts a product's fp32 operands to bf16; under the mode the product is the
    same bf16 result (PyTorch's autocast kernels, up to summation order) and the fp32 leaves get fp32 gradients,
    each the exact gradient of the bf16-rounded operands rounded once to bf16."""
    f, sa, sb = PRODUCTS[name]
    a32 = torch.randn(*sa, generator=torch.Generator().manual_seed(1))
    b32 = torch.randn(*sb, generator=torch.Generator().manual_seed(2))

    def run(mode):
        x, w = a32.clone().requires_grad_(), b32.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16), mode:
            out = f(x, w)
        out.backward(_bf16(*out.shape, seed=3))
        return out.detach(), x.grad, w.grad

    native, emulated = run(contextlib.nullcontext()), run(Fp32Accumulation())
    assert emulated[0].dtype == native[0].dtype == torch.bfloat16
    assert (emulated[0] == native[0]).float().mean() >= 0.99
    x, w = a32.bfloat16().double().requires_grad_(), b32.bfloat16().double().requires_grad_()
    out = f(x, w)
    out.backward(_bf16(*out.shape, seed=3).double())
    for got, exact in ((emulated[1], x.grad), (emulated[2], w.grad)):
        assert got.dtype == torch.float32
        assert (got == exact.bfloat16().float()).float().mean() >= 0.99

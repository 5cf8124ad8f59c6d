"""The multi-tensor machinery of the diagonal root-free methods (optimizers/_compiled.py), without compiling.

Their state lives in flat buffers per bucket and ``opt.state`` holds views into them; these tests pin
that this is invisible from outside: state bytes, dtypes and shapes as the reference's, checkpoints that
move between implementations, and parameters that join or leave a bucket (no gradient this step, a
moved parameter, momentum switched on), all bit-identical to the reference step on CPU.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn

import rootbench.optimizers._compiled as compiled_mod
from rootbench.harness.measure import optimizer_impl, optimizer_state_bytes
from rootbench.optimizers import create_optimizer

B = 16
SHAPES = [(12, 5), (5,), (3, 2, 2), (1,), (40,)]
NAMES = ["rfadamw", "rfrmsprop"]
HP = {"rfadamw": dict(weight_decay=1e-2, bias_correction=True), "rfrmsprop": dict(momentum=0.9, weight_decay=1e-2)}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params_of(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in SHAPES]


def pair(name, dtype=torch.float32, impls=("reference", "multi_tensor"), **hp):
    out = []
    for impl in impls:
        params = params_of(dtype)
        out.append((params, create_optimizer(name, params, batch_size=B, lr=1e-2, impl=impl, **{**HP[name], **hp})))
    return out


def grads_for(params_lists, g, skip=()):
    grads = [(torch.randn(p.shape, generator=g) * 0.1).to(p.dtype) for p in params_lists[0]]
    for params in params_lists:
        for i, (p, gr) in enumerate(zip(params, grads)):
            p.grad = None if i in skip else gr.clone()


def assert_identical(a_params, b_params, a_opt, b_opt):
    for a, b in zip(a_params, b_params):
        assert torch.equal(a, b), tuple(a.shape)
        assert a_opt.state[a].keys() == b_opt.state[b].keys()
        for key, v in a_opt.state[a].items():
            w = b_opt.state[b][key]
            assert (torch.equal(v, w) and v.dtype == w.dtype and v.shape == w.shape) if torch.is_tensor(v) else v == w


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", NAMES)
def test_state_is_views_into_one_buffer_per_key_with_the_reference_bytes(name, dtype):
    (ref, ref_opt), (fast, fast_opt) = pair(name, dtype)
    grads_for([ref, fast], torch.Generator().manual_seed(0))
    ref_opt.step()
    fast_opt.step()
    for key in fast_opt.state[fast[0]]:
        if torch.is_tensor(fast_opt.state[fast[0]][key]):
            storages = {fast_opt.state[p][key].untyped_storage().data_ptr() for p in fast}
            assert len(storages) == 1, key  # one bucket: one flat buffer per state key
            assert all(fast_opt.state[p][key].shape == p.shape and fast_opt.state[p][key].dtype == dtype for p in fast)
    n = sum(p.numel() for p in fast)
    assert optimizer_state_bytes(fast_opt) == optimizer_state_bytes(ref_opt) == 2 * n * fast[0].element_size()
    assert optimizer_impl(fast_opt) == "multi_tensor" and optimizer_impl(ref_opt) == "reference"


@pytest.mark.parametrize("name", NAMES)
def test_checkpoints_move_between_implementations(name):
    """multi_tensor -> (torch.save) -> reference and reference -> multi_tensor continue bit-identically."""
    g = torch.Generator().manual_seed(3)
    (ref, ref_opt), (fast, fast_opt) = pair(name)
    for _ in range(3):
        grads_for([ref, fast], g)
        ref_opt.step()
        fast_opt.step()
    buf = io.BytesIO()
    torch.save(fast_opt.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    (ref2, ref2_opt), (fast2, fast2_opt) = pair(name)
    with torch.no_grad():
        for a, b, c in zip(fast, ref2, fast2):
            b.copy_(a)
            c.copy_(a)
    ref2_opt.load_state_dict(loaded)  # a multi_tensor checkpoint continues on the reference
    fast2_opt.load_state_dict(ref_opt.state_dict())  # and a reference one on multi_tensor
    for _ in range(3):
        grads_for([ref, fast, ref2, fast2], g)
        for opt in (ref_opt, fast_opt, ref2_opt, fast2_opt):
            opt.step()
    assert_identical(ref, fast, ref_opt, fast_opt)
    assert_identical(ref, ref2, ref_opt, ref2_opt)
    assert_identical(ref, fast2, ref_opt, fast2_opt)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_joining_and_leaving_buckets_keep_the_reference_step(name):
    g = torch.Generator().manual_seed(4)
    (ref, ref_opt), (fast, fast_opt) = pair(name)
    for step in range(7):
        skip = {1, 3} if step in (2, 3) else set()  # no gradient for two steps: they leave the bucket
        grads_for([ref, fast], g, skip=skip)
        if step == 4:  # a parameter moved to new storage (as module.to() may do)
            with torch.no_grad():
                ref[0].data = ref[0].data.clone()
                fast[0].data = fast[0].data.clone()
        if step == 5 and name == "rfrmsprop":  # momentum switched on: a new state key joins the buffers
            for opt in (ref_opt, fast_opt):
                opt.param_groups[0]["momentum"] = 0.0
        if step == 6 and name == "rfrmsprop":
            for opt in (ref_opt, fast_opt):
                opt.param_groups[0]["momentum"] = 0.5
        ref_opt.step()
        fast_opt.step()
        assert_identical(ref, fast, ref_opt, fast_opt)
    if name == "rfadamw":
        assert [fast_opt.state[p]["step"] for p in fast] == [7, 5, 7, 5, 7]
    n = sum(p.numel() for p in fast)
    assert optimizer_state_bytes(fast_opt) == optimizer_state_bytes(ref_opt) == 2 * n * 4  # old buffers freed


@pytest.mark.parametrize("name", NAMES)
def test_strided_and_sparse_parameters_take_the_reference_step(name):
    g = torch.Generator().manual_seed(5)
    (ref, ref_opt), (fast, fast_opt) = pair(name)
    for params in (ref, fast):  # a transposed (non-contiguous) parameter
        params[0].data = params[0].data.t().contiguous().t()
    for _ in range(3):
        grads_for([ref, fast], g)
        ref_opt.step()
        fast_opt.step()
        assert_identical(ref, fast, ref_opt, fast_opt)
    assert fast_opt._plans[0].reference == [fast[0]]


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_only_read(name):
    """A bucket of one tensor flattens to a view of its gradient: the step must not write through it."""
    params = [nn.Parameter(torch.randn(5))]
    opt = create_optimizer(name, params, batch_size=B, impl="multi_tensor", **HP[name])
    params[0].grad = torch.randn(5)
    grad = params[0].grad.clone()
    opt.step()
    assert torch.equal(params[0].grad, grad)


def test_flat_copy_concatenates_and_casts():
    a, b = torch.arange(6.0).view(2, 3), torch.tensor([7.0, 8.0])
    flat = compiled_mod.flat_copy([a, b.to(torch.bfloat16).float()], torch.bfloat16)
    assert flat.dtype == torch.bfloat16 and flat.tolist() == [0, 1, 2, 3, 4, 5, 7, 8]
    sizes = [[t.numel() for t in c] for c in compiled_mod._chunks([torch.zeros(n) for n in (3, 3, 5, 1, 9)], 6)]
    assert sizes == [[3, 3], [5, 1], [9]]

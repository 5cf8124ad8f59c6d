"""Every registered optimizer takes steps on every registered task's model (smoke tier, generated data).

Parametrised over both registries, so a new optimizer or task is tested without editing this file. The
parameter shapes of real architectures are what a toy net misses: a ViT's [1, 1, D] class token shares
its squeezed shape with the [D] biases, which once broke IF-Shampoo's batched path on cifar10-vit only.
"""

from __future__ import annotations

import math

import pytest
import torch

from rootbench.optimizers import create_optimizer, get_optimizer_spec, list_optimizers
from rootbench.tasks import create_task, list_tasks
from tests.task_fakes import one_thread  # noqa: F401 - autouse fixture

OPTIMIZERS = [n for n in list_optimizers() if get_optimizer_spec(n).parent is None]  # variants share code
STEPS = 3  # past IF-Shampoo's first factor update and Shampoo's first root


@pytest.fixture(scope="module")
def tasks():
    return {}


@pytest.mark.parametrize("task_name", list_tasks())
@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_optimizer_steps_on_the_task_model(opt_name, task_name, tasks):
    if task_name not in tasks:
        tasks[task_name] = create_task(task_name, "smoke")
    task = tasks[task_name]
    torch.manual_seed(0)
    model = task.build_model()
    model.train()
    spec = get_optimizer_spec(opt_name)
    hp = {"lr": spec.test_lr} if spec.test_lr else {}
    if spec.needs_batch_size:
        hp["batch_size"] = task.batch_size
    opt = create_optimizer(opt_name, model, **hp)
    before = [p.detach().clone() for p in model.parameters()]
    batches = task.train_batches(torch.Generator().manual_seed(0), "cpu")
    for _ in range(STEPS):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(x), y)
        assert math.isfinite(loss.item())
        loss.backward()
        opt.step()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, after))

"""rootbench's optimizers in other people's training loops (Lightning, the Hugging Face Trainer, plain loops).

Neither Lightning nor transformers is a test dependency: the loops below make the calls they make (a 0-d
tensor lr that a scheduler updates in place, gradient accumulation, AdamW-style keyword arguments, the
optimizer built from ``model.parameters()``), and ``global_batch_size`` is fed objects with their attributes.
Parametrised over the registry, so a new optimizer is covered without editing this file.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rootbench.harness.registry import RegistryError
from rootbench.optimizers import create_optimizer, get_optimizer_spec, global_batch_size, list_optimizers

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMES = list_optimizers()
B = 8


def model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.LayerNorm(5), nn.Linear(5, 3))


def build(name, m, **hp):
    if get_optimizer_spec(name).needs_batch_size:
        hp.setdefault("batch_size", B)
    return create_optimizer(name, m, **hp)


def steps(m, opt, n=4, seed=1, sched=None):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(B, 6, generator=g), torch.randint(0, 3, (B,), generator=g)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("name", NAMES)
def test_a_tensor_lr_steps_exactly_like_the_float_and_follows_a_scheduler(name):
    """torch.optim accepts ``lr`` as a 0-d tensor, which schedulers update in place."""
    lr = float(torch.tensor(get_optimizer_spec(name).test_lr))  # the float32 value a 0-d tensor holds
    a, b = model(), model()
    opt_a = build(name, a, lr=lr)
    opt_b = build(name, b, lr=torch.tensor(lr))
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=2, gamma=0.5)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=2, gamma=0.5)
    torch.manual_seed(3)  # an optimizer that draws random probes (PSGD-Kron) draws the same in both
    steps(a, opt_a, sched=sched_a)
    torch.manual_seed(3)
    steps(b, opt_b, sched=sched_b)
    assert float(opt_b.param_groups[0]["lr"]) == pytest.approx(lr / 4)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("name", NAMES)
def test_a_tensor_lr_that_is_not_a_scalar_is_refused(name):
    with pytest.raises((ValueError, RegistryError, RuntimeError)):
        build(name, model(), lr=torch.tensor([1e-3, 1e-3]))


FOREIGN = [
    (n, k)
    for n in NAMES
    for k in sorted(getattr(get_optimizer_spec(n).factory, "FOREIGN_NAMES", {}))
    if k not in get_optimizer_spec(n).defaults
]


@pytest.mark.parametrize("name, key", FOREIGN)
def test_adamw_style_names_are_refused_with_ours(name, key):
    """``betas``/``eps`` do not mean the same here (damping has no root); the error names what to use."""
    spec = get_optimizer_spec(name)
    hint = spec.factory.FOREIGN_NAMES[key]
    value = (0.9, 0.999) if key == "betas" else 1e-8
    with pytest.raises(RegistryError) as err:
        build(name, model(), **{key: value})
    assert key in str(err.value) and hint in str(err.value)
    kwargs = {"batch_size": B} if spec.needs_batch_size else {}
    with pytest.raises(TypeError) as err:  # the class itself, as a Lightning config would build it
        spec.factory(model().parameters(), **kwargs, **{key: value})
    assert hint in str(err.value)


def test_the_declared_aliases_cover_the_usual_adamw_names():
    declared = {n for n, _ in FOREIGN}
    for name in ("rfadamw", "rfrmsprop", "ifshampoo", "shampoo"):
        assert name in declared and ("eps", name) in {(k, n) for n, k in FOREIGN}


def test_a_name_rule_without_names_is_an_error_not_a_silent_no_op():
    """``ifshampoo_paper`` discounts lr_cov by parameter name; ``model.parameters()`` carries none."""
    m = model()
    with pytest.raises(ValueError, match="named parameters"):
        create_optimizer("ifshampoo_paper", list(m.parameters()), batch_size=B)
    opt = create_optimizer("ifshampoo_paper", list(m.named_parameters()), batch_size=B)
    steps(m, opt, n=1)
    assert any(b.n_discounted for group in opt._buckets.values() for b in group.values())


@pytest.mark.parametrize(
    "source, per_device, expected",
    [
        # Hugging Face TrainingArguments: per device x accumulation x processes
        (SimpleNamespace(per_device_train_batch_size=16, gradient_accumulation_steps=4, world_size=2), None, 128),
        (SimpleNamespace(per_device_train_batch_size=16, gradient_accumulation_steps=1, world_size=1), 32, 32),
        # a Lightning Trainer after its dataloader is built, and in configure_optimizers (told the batch)
        (
            SimpleNamespace(accumulate_grad_batches=2, world_size=4, train_dataloader=SimpleNamespace(batch_size=8)),
            None,
            64,
        ),
        (SimpleNamespace(accumulate_grad_batches=1, world_size=2, train_dataloader=None), 32, 64),
    ],
)
def test_global_batch_size_from_a_trainer_or_training_arguments(source, per_device, expected):
    assert global_batch_size(source, per_device=per_device) == expected


@pytest.mark.parametrize(
    "source, message",
    [
        (SimpleNamespace(accumulate_grad_batches=1, world_size=1, train_dataloader=None), "per_device="),
        (SimpleNamespace(per_device_train_batch_size=0, gradient_accumulation_steps=1, world_size=1), "per-device"),
        (SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=1.5, world_size=1), "accumulation"),
        (object(), "cannot read a batch size"),
    ],
)
def test_global_batch_size_refuses_to_guess(source, message):
    with pytest.raises(ValueError, match=message):
        global_batch_size(source)


@pytest.mark.parametrize("name", [n for n in NAMES if get_optimizer_spec(n).needs_batch_size])
def test_a_trainer_style_loop_with_accumulation_checkpoint_and_resume(name):
    """What the HF Trainer does: B from its arguments, losses scaled by 1/accumulation, a LambdaLR schedule,
    a checkpoint of model, optimizer and scheduler mid-run; the resumed run ends where the unbroken one does."""
    args = SimpleNamespace(per_device_train_batch_size=4, gradient_accumulation_steps=2, world_size=1)
    lr = get_optimizer_spec(name).test_lr

    def run(m, opt, sched, start, stop):
        g = torch.Generator().manual_seed(7)
        micro = [(torch.randn(4, 6, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(2 * stop)]
        for step in range(start, stop):
            opt.zero_grad(set_to_none=True)
            for x, y in micro[2 * step : 2 * step + 2]:
                (F.cross_entropy(m(x), y) / args.gradient_accumulation_steps).backward()
            opt.step()
            sched.step()

    def fresh():
        m = model()
        opt = create_optimizer(name, m, lr=lr, batch_size=global_batch_size(args))
        return m, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))

    whole = fresh()
    run(*whole, 0, 6)
    first = fresh()
    run(*first, 0, 3)
    saved = copy.deepcopy({"m": first[0].state_dict(), "o": first[1].state_dict(), "s": first[2].state_dict()})
    resumed = fresh()
    resumed[0].load_state_dict(saved["m"])
    resumed[1].load_state_dict(saved["o"])
    resumed[2].load_state_dict(saved["s"])
    run(*resumed, 3, 6)
    for p, q in zip(whole[0].parameters(), resumed[0].parameters(), strict=True):
        assert torch.equal(p, q), name

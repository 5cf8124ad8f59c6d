"""``rootbench rounding``: probing a bf16-pure run leaves it as it was, and "lost" counts exactly the entries whose
fp32 update the bf16 step rounds away."""

import pytest
import torch

from rootbench.harness.config import RunConfig
from rootbench.harness.registry import UsageError
from rootbench.harness.resolve import resolve_run
from rootbench.harness.rounding import WEIGHTS, _Probed, _Stop, probe, summary
from rootbench.harness.runner import seed_everything
from rootbench.optimizers import list_optimizers
from tests.conftest import rootbench

STEPS = 4


def _bf16(opt, task="mnist1d-mlp", **hparams):
    return resolve_run(
        task,
        opt,
        RunConfig(
            tier="smoke",
            precision="bf16-pure",
            ref_steps=0,
            threads=1,
            hparams=hparams,
            task_settings={"steps": STEPS, "eval_every": STEPS},
        ),
    )


def _weights_after(run_cls, spec, **kwargs):
    seed_everything(spec.seed)
    r = run_cls(spec, torch.device("cpu"), progress=None, **kwargs)
    r.setup()
    try:
        r.train()
    except _Stop:
        pass
    return [p.detach().clone() for p in r.model.parameters()], r


@pytest.mark.parametrize("opt", list_optimizers())  # plugins included
def test_probing_every_step_leaves_the_bf16_run_bit_identical(opt):
    """The fp32 twin is a copy: stepping it never touches the real weights or state, at any probed step."""
    spec = _bf16(opt)
    plain, _ = _weights_after(_Probed, spec, probe_steps=[], stop_after=STEPS)  # the runner's loop, unprobed
    probed, r = _weights_after(_Probed, spec, probe_steps=list(range(1, STEPS + 1)))
    assert [s for s, _ in r.measured] == list(range(1, STEPS + 1))
    assert all(torch.equal(a, b) for a, b in zip(plain, probed))
    rows = summary(r.measured)
    assert rows[WEIGHTS][0] == sum(p.numel() for p in r.model.parameters() if p.requires_grad)
    for n, moved, lost, lost_sq in rows.values():
        assert n > 0 and 0 <= moved <= 1
        assert all(x != x or 0 <= x <= 1 for x in (lost, lost_sq))  # NaN: nothing moved


def test_lost_counts_updates_below_half_the_bf16_spacing():
    """Plain SGD: an update far below half a bf16 ulp of the weights is lost everywhere it moves an fp32 weight;
    a large one almost nowhere. SGD keeps no state, so the weights are the only row."""
    tiny = summary(probe(_bf16("sgd", lr=1e-7, momentum=0.0), STEPS, 1))
    assert set(tiny) == {WEIGHTS}
    assert tiny[WEIGHTS][2] == 1.0


def test_lost_is_exactly_the_entries_whose_step_is_below_half_a_bf16_spacing():
    """Weights at 1.0 (bf16 spacing 2^-7 there): a step of 1e-3 rounds away, one of 0.25 does not, and a zero
    gradient moves nothing; so of 64 weights and 8 biases, 64 move and the 32 small steps are lost."""
    from rootbench.harness.rounding import compare_step
    from rootbench.optimizers import create_optimizer

    spec = _bf16("sgd", lr=1.0, momentum=0.0)
    model = torch.nn.Linear(8, 8).to(torch.bfloat16)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.zero_()
    small = torch.arange(64).reshape(8, 8) % 2 == 0
    model.weight.grad = torch.where(small, 1e-3, 0.25).to(torch.bfloat16)
    model.bias.grad = torch.zeros(8, dtype=torch.bfloat16)
    opt = create_optimizer("sgd", model, **spec.optimizer_kwargs())
    counts = compare_step(model, opt, spec, opt.step)
    assert counts.keys() == {WEIGHTS} and counts[WEIGHTS][:3] == (72, 64, 32)
    small_step, large_step = 1e-3, 0.25  # the gradients as bf16 holds them, times lr = 1
    lost_sq = 32 * float(torch.tensor(small_step, dtype=torch.bfloat16)) ** 2
    assert counts[WEIGHTS][3:] == pytest.approx((lost_sq + 32 * large_step**2, lost_sq), rel=1e-5)
    assert torch.equal(model.weight[small], torch.ones(32, dtype=torch.bfloat16))  # the real step did run
    assert not (model.weight[~small] == 1).any()


def test_bad_requests_are_one_line_errors(capsys):
    fp32 = resolve_run("mnist1d-mlp", "sgd", RunConfig(tier="smoke", ref_steps=0))
    with pytest.raises(UsageError, match="compares a bf16-pure step"):
        probe(fp32, 2, 1)
    with pytest.raises(UsageError, match="--steps must be"):
        probe(_bf16("sgd"), STEPS + 1, 1)
    code = rootbench("rounding", "--task", "mnist1d-mlp", "--opt", "sgd", "--tier", "smoke", "--every", "0")
    err = capsys.readouterr().err
    assert code == 2 and "--every positive" in err and err.count("\n") == 1
    code = rootbench("rounding", "--from-run", "0123456789ab", "--runs", "nowhere")
    assert code == 2 and "no run '0123456789ab'" in capsys.readouterr().err

"""Run diagnostics for the claims: warm-start share at every evaluation, and EMA states frozen by rounding."""

import pytest

from rootbench.harness import records, run
from rootbench.harness.config import RunConfig
from rootbench.optimizers import get_optimizer_spec, list_optimizers

SMOKE = dict(tier="smoke", ref_steps=0)


def test_a_bf16_state_whose_ema_factor_rounds_to_one_is_warned_and_recorded():
    with pytest.warns(RuntimeWarning, match="cannot decay"):
        rows = run("quadratic", "adamw", RunConfig(**SMOKE, precision="bf16-pure", hparams={"lr_cov": 1e-3}))
    rec = records.record_from_rows(rows)
    assert rec["state_frozen"] is True and "1 - lr_cov rounds to 1 in bfloat16" in rec["state_frozen_reason"]
    fine = records.record_from_rows(run("quadratic", "adamw", RunConfig(**SMOKE, hparams={"lr_cov": 1e-3})))
    assert fine["state_frozen"] is False  # fp32 resolves 1 - 1e-3
    big = records.record_from_rows(
        run("quadratic", "adamw", RunConfig(**SMOKE, precision="bf16-pure", hparams={"lr_cov": 0.05}))
    )
    assert big["state_frozen"] is False


@pytest.mark.parametrize("name", [n for n in list_optimizers() if get_optimizer_spec(n).warm_start])
def test_methods_with_a_warm_start_report_its_share_at_every_evaluation(name):
    rows = run("quadratic", name, RunConfig(**SMOKE))
    rec = records.record_from_rows(rows)
    share = rec.curve[(rec.curve["split"] == "optimizer") & (rec.curve["metric"] == "warm_start_share")]
    evals = rec.curve[(rec.curve["split"] == "val") & (rec.curve["metric"] == "loss")]
    assert list(share["step"]) == list(evals["step"])
    assert all(0.0 <= v <= 1.0 for v in share["value"])
    assert rec["warm_start_share"] == pytest.approx(share.sort_values("step")["value"].iloc[-1])
    # the start is the whole preconditioner before any step, and less of it afterwards
    assert share.sort_values("step")["value"].iloc[0] == pytest.approx(1.0, abs=1e-6)

"""Claim verdicts computed from the numbers: planted runs decide, or are refused, as the rules say."""

import numpy as np
import pandas as pd
import pytest

from rootbench.leaderboard import verdicts as V

PAIRS = [("adamw", "rfadamw"), ("shampoo", "ifshampoo")]


def _model(values: dict, kind="vit", warm=None, frozen=None, gap=0.05, pure=None, metric="accuracy"):
    """A minimal model: ``values[optimizer]`` = test values of its selected fp32 configuration."""
    ov, configs, summary = [], [], []
    for opt, vals in values.items():
        ids = [f"{opt}-{i}" for i in range(len(vals))]
        row = {
            "tier": "long",
            "task": "t",
            "optimizer": opt,
            "selected": True,
            "metric_name": metric,
            "higher_is_better": metric == "accuracy",
            "test_values": list(vals),
            "test_n": len(vals),
            "test_mean": float(np.mean(vals)),
            "run_ids": ids,
            "setting_id": f"s-{opt}",
            "n_configs": 17,
            "warm_start_max": (warm or {}).get(opt, 0.1),  # as aggregate.configs derives it from the runs
        }
        ov.append(row)
        configs.append({**row, "precision": "fp32"})
        for i, rid in enumerate(ids):
            summary.append(
                {
                    "run_id": rid,
                    "tier": "long",
                    "task": "t",
                    "optimizer": opt,
                    "gap": gap + 0.001 * i,
                    "warm_start_share": (warm or {}).get(opt, 0.1),
                    "state_frozen": (frozen or {}).get(opt, False),
                }
            )
    for opt, vals in (pure or {}).items():
        ids = [f"{opt}-pure-{i}" for i in range(len(vals))]
        configs.append(
            {
                "tier": "long",
                "task": "t",
                "optimizer": opt,
                "precision": "bf16-pure",
                "setting_id": f"s-{opt}",
                "test_values": list(vals),
                "test_n": len(vals),
                "run_ids": ids,
            }
        )
        summary += [
            {
                "run_id": rid,
                "tier": "long",
                "task": "t",
                "optimizer": opt,
                "gap": gap,
                "warm_start_share": 0.1,
                "state_frozen": (frozen or {}).get(opt + "-pure", False),
            }
            for rid in ids
        ]
    points = pd.DataFrame(
        {"run_id": [r["run_id"] for r in summary], "step": 0, "split": "test", "metric": metric, "value": 0.1}
    )
    return {
        "overview": pd.DataFrame(ov),
        "configs": pd.DataFrame(configs),
        "summary": pd.DataFrame(summary),
        "points": points,
        "pairs": PAIRS,
        "task_info": {"t": {"model_kind": kind}},
        "opt_info": {"rfadamw": {"warm_start": True}, "ifshampoo": {"warm_start": True}},
    }


def _seeds(mean, n=5, sd=0.005, seed=0):
    return list(mean + sd * np.random.default_rng(seed).standard_normal(n))


def _verdict(df, claim, comparison):
    row = df[(df["claim"] == claim) & (df["comparison"] == comparison)]
    assert len(row) == 1, df
    return row.iloc[0]


def test_claim_2_supported_contradicted_and_refused():
    same = _model(
        {
            "adamw": _seeds(0.60),
            "rfadamw": _seeds(0.60, seed=1),
            "shampoo": _seeds(0.60, seed=2),
            "ifshampoo": _seeds(0.50, seed=3),
        }
    )
    df = V.decide(same, "long")
    assert _verdict(df, 2, "rfadamw vs adamw")["verdict"] == "supported"
    worse = _verdict(df, 2, "ifshampoo vs shampoo")
    assert worse["verdict"] == "contradicted" and worse["q"] < 0.05 and worse["diff"] < 0
    few = _model({"adamw": _seeds(0.6, n=3), "rfadamw": _seeds(0.6, n=3)})
    assert "finished seeds" in _verdict(V.decide(few, "long"), 2, "rfadamw vs adamw")["reason"]


def test_a_warm_start_dominated_root_free_run_is_not_testable():
    m = _model({"adamw": _seeds(0.60), "rfadamw": _seeds(0.60, seed=1)}, warm={"rfadamw": 0.93})
    row = _verdict(V.decide(m, "long"), 2, "rfadamw vs adamw")
    assert row["verdict"] == "not testable" and "warm-start dominated" in row["reason"]
    unknown = _model({"adamw": _seeds(0.60), "rfadamw": _seeds(0.60, seed=1)})
    unknown["summary"] = unknown["summary"].drop(columns=["warm_start_share"])
    assert "not recorded" in _verdict(V.decide(unknown, "long"), 2, "rfadamw vs adamw")["reason"]


def test_claim_3_refuses_a_state_frozen_by_rounding():
    ok = _model({"rfadamw": _seeds(0.6)}, pure={"rfadamw": _seeds(0.6, seed=4)})
    assert _verdict(V.decide(ok, "long"), 3, "rfadamw bf16-pure vs fp32")["verdict"] == "supported"
    frozen = _model({"rfadamw": _seeds(0.6)}, pure={"rfadamw": _seeds(0.6, seed=4)}, frozen={"rfadamw-pure": True})
    row = _verdict(V.decide(frozen, "long"), 3, "rfadamw bf16-pure vs fp32")
    assert row["verdict"] == "not testable" and "frozen by rounding" in row["reason"]


def test_a_missing_side_is_named_and_a_refused_bf16_rerun_says_so():
    """The reason names the optimizer whose selection is missing (a sweep that did not finish), and a claim-3 refusal
    that comes from the bf16-pure reruns says it is theirs, not the fp32 selection's."""
    m = _model({"sgd": _seeds(0.80), "ifshampoo": _seeds(0.8, seed=1)}, kind="cnn")
    row = _verdict(V.decide(m, "long"), 1, "ifshampoo vs sgd (root: shampoo)")
    assert row["verdict"] == "not testable" and row["reason"] == "no selected configuration of shampoo"
    m = _model({"rfadamw": _seeds(0.6)}, pure={"rfadamw": _seeds(0.6, seed=4)}, frozen={"rfadamw-pure": True})
    reason = _verdict(V.decide(m, "long"), 3, "rfadamw bf16-pure vs fp32")["reason"]
    assert reason.startswith("in bf16-pure, ") and "frozen by rounding" in reason


def test_claim_1_needs_an_adaptive_gap_and_then_asks_whether_root_free_closes_it():
    closes = _model({"sgd": _seeds(0.80), "adamw": _seeds(0.75, seed=1), "rfadamw": _seeds(0.80, seed=2)}, kind="cnn")
    df = V.decide(closes, "long")
    assert _verdict(df, 1, "rfadamw vs sgd (root: adamw)")["verdict"] == "supported"
    assert _verdict(df, 1, "adamw vs sgd")["verdict"] == "context"
    stays = _model({"sgd": _seeds(0.80), "adamw": _seeds(0.75, seed=1), "rfadamw": _seeds(0.75, seed=2)}, kind="cnn")
    assert _verdict(V.decide(stays, "long"), 1, "rfadamw vs sgd (root: adamw)")["verdict"] == "contradicted"
    no_gap = _model({"sgd": _seeds(0.80), "adamw": _seeds(0.80, seed=1), "rfadamw": _seeds(0.80, seed=2)}, kind="cnn")
    row = _verdict(V.decide(no_gap, "long"), 1, "rfadamw vs sgd (root: adamw)")
    assert row["verdict"] == "not testable" and "no adaptive gap" in row["reason"]
    no_sgd_gap = _model(
        {"sgd": _seeds(0.80), "adamw": _seeds(0.75, seed=1), "rfadamw": _seeds(0.8, seed=2)}, kind="cnn", gap=-0.001
    )
    assert "nothing to close" in _verdict(V.decide(no_sgd_gap, "long"), 1, "rfadamw vs sgd (root: adamw)")["reason"]


def test_q_values_are_benjamini_hochberg_within_each_claim():
    from rootbench.harness.stats import benjamini_hochberg

    m = _model(
        {
            "adamw": _seeds(0.60),
            "rfadamw": _seeds(0.59, seed=1),
            "shampoo": _seeds(0.60, seed=2),
            "ifshampoo": _seeds(0.58, seed=3),
        }
    )
    df = V.decide(m, "long")
    two = df[df["claim"] == 2]
    assert two["q"].tolist() == pytest.approx(benjamini_hochberg(two["p"].tolist()))


def test_sides_tuned_under_different_protocols_are_not_compared():
    m = _model({"adamw": _seeds(0.60), "rfadamw": _seeds(0.60, seed=1)})
    m["tuning_protocol"] = {("long", "t", "adamw"): 1, ("long", "t", "rfadamw"): 2}
    row = _verdict(V.decide(m, "long"), 2, "rfadamw vs adamw")
    assert row["verdict"] == "not testable" and "different protocols" in row["reason"]
    m["tuning_protocol"] = {("long", "t", "adamw"): 2, ("long", "t", "rfadamw"): 2}
    assert _verdict(V.decide(m, "long"), 2, "rfadamw vs adamw")["verdict"] == "supported"


def test_a_re_sweep_replaces_the_old_protocol_and_the_old_tables_stay_reproducible():
    from rootbench.leaderboard.model import newest_protocol

    runs = pd.DataFrame(
        {
            "tier": "quick",
            "task": "t",
            "optimizer": ["sgd", "sgd", "sgd", "adamw", "adamw"],
            "run_id": ["single", "old", "new", "a-old", "a-single"],
            "tuning_protocol": [0, 1, 2, 1, 0],
        }
    )
    kept, chosen = newest_protocol(runs)
    assert set(kept["run_id"]) == {"new", "a-old", "a-single"}  # a single run sits with the first protocol
    assert chosen == {("quick", "t", "sgd"): 2, ("quick", "t", "adamw"): 1}
    old, chosen_old = newest_protocol(runs, up_to=1)
    assert set(old["run_id"]) == {"single", "old", "a-old", "a-single"}
    assert chosen_old[("quick", "t", "sgd")] == 1


def test_each_run_carries_the_newest_manifest_version_that_lists_it(tmp_path):
    import json

    from rootbench.leaderboard.load import tuning_protocols

    folder = tmp_path / "sweeps" / "t" / "o"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(
        json.dumps({"manifest_version": 1, "trials": [{"run_id": "x"}, {"run_id": "y"}], "seeds": []})
    )
    (folder / "b.json").write_text(
        json.dumps(
            {
                "manifest_version": 2,
                "trials": [{"run_id": "y"}],
                "seeds": [{"run_id": "z"}],
                "other_precisions": {"bf16-pure": ["p"]},
            }
        )
    )
    (folder / "broken.json").write_text("{")
    warnings = []
    assert tuning_protocols(str(tmp_path), warnings.append) == {"x": 1, "y": 2, "z": 2, "p": 2}
    assert len(warnings) == 1 and "broken.json" in warnings[0]


def test_claims_lists_the_warm_start_share_of_each_selected_warm_started_configuration():
    from rootbench.leaderboard.claims import verdict_table, warm_start_table

    m = _model({"adamw": _seeds(0.60), "rfadamw": _seeds(0.60, seed=1)}, warm={"rfadamw": 0.93})
    m["tuning_protocol"] = {("long", "t", "adamw"): 2, ("long", "t", "rfadamw"): 2}
    rows = [line for line in warm_start_table(m, "long") if line.startswith("| t |")]
    assert rows == ["| t | rfadamw | 2 | 0.930 | 5 | no |"]  # adamw declares no warm start
    table = "\n".join(verdict_table(m, "long"))
    assert "| t | 2 | rfadamw vs adamw |" in table and "warm-start dominated" in table

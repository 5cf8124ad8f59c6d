"""``rootbench bench-optim`` runs and its numbers are sane (tiny shapes, a few steps; no speed thresholds)."""
from __future__ import annotations

import glob
import math
import os

import pandas as pd
import pytest
import torch

from rootbench.harness import bench_optim
from rootbench.harness.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_cli(tmp_path, *extra):
    runs = str(tmp_path / "runs")
    code = main(["bench-optim", "--threads", "1", "--rounds", "2", "--min-run-time", "0.01", "--no-peak", "--quiet",
                 "--runs", runs, *extra])
    files = glob.glob(os.path.join(runs, "bench-optim", "*.parquet"))
    return code, files


def test_bench_optim_runs_and_reports_sane_numbers(tmp_path, capsys):
    opts = "rfadamw,rfrmsprop:momentum=0.9,sgd,ifshampoo,shampoo"
    opts += ",sirfshampoo" if bench_optim.EXTERNAL["sirfshampoo"].available() else ""
    code, files = run_cli(tmp_path, "--opt", opts, "--shape", "16x8", "8", "--n-tensors", "2", "--T", "1,2")
    assert code == 0 and len(files) == 1
    out = capsys.readouterr().out
    assert "xAdamW" in out and "rfrmsprop[momentum=0.9]" in out
    df = pd.read_parquet(files[0])
    n = 2 * (16 * 8 + 8)
    assert set(df["n_params"]) == {n}
    assert (df["threads"] == 1).all() and {"git_sha", "torch_version", "cpu", "load_avg_start"} <= set(df.columns)
    for col in ("step_time_s", "ratio_adamw", "probe_add_GBps", "first_step_s"):
        assert (df[col] > 0).all() and df[col].map(math.isfinite).all(), col
    assert df["finite"].all()
    by = df.set_index("label")
    assert by.loc["adamw[impl=fused]", "ratio_adamw"] == 1.0
    # what ran: tensors this small keep the reference step under impl=auto
    assert by.loc["adamw[impl=fused]", "impl"] == "fused" and by.loc["sgd", "impl"] == "fused"
    assert by.loc["rfadamw", "impl"] == "reference" and by.loc["ifshampoo T=1", "impl"] == "batched"
    # exact state bytes: two fp32 buffers per parameter; fused AdamW adds a 4-byte step per tensor
    assert by.loc["rfadamw", "state_bytes_per_param"] == 8.0
    assert by.loc["rfrmsprop[momentum=0.9]", "state_bytes_per_param"] == 8.0
    assert by.loc["sgd", "state_bytes_per_param"] == 4.0
    assert by.loc["adamw[impl=fused]", "state_bytes"] == 8 * n + 4 * 4
    # traffic floors of the paper (fp32): AdamW / RF-AdamW / RF-RMSProp+momentum 28, SGD+momentum 20
    assert list(by.loc[["adamw[impl=fused]", "rfadamw", "rfrmsprop[momentum=0.9]", "sgd"],
                       "traffic_floor_bytes_per_param"]) == [28, 28, 28, 20]
    # IF-Shampoo: K and m_K per axis plus the momentum buffer, fp32 (a 16x8 weight: 16^2 + 8^2; a bias: 8^2)
    kron = 2 * (2 * (16 * 16 + 8 * 8) + 2 * 8 * 8) * 4 + n * 4
    assert by.loc["ifshampoo T=1", "state_bytes"] == kron
    assert math.isnan(by.loc["ifshampoo T=1", "traffic_floor_bytes_per_param"])
    periodic = df[df["optimizer"].isin(["ifshampoo", "shampoo", "sirfshampoo"])]
    assert set(periodic["T"]) == {1, 2}
    assert (periodic["update_step_s"] > 0).all()
    assert periodic[periodic["T"] == 2]["regular_step_s"].gt(0).all()
    shampoo = df[df["optimizer"] == "shampoo"]
    assert shampoo["eigh_share"].between(0, 1).all() and shampoo["eigh_share"].gt(0).all()


def test_bench_optim_bf16_diagonal_state_is_half(tmp_path):
    code, files = run_cli(tmp_path, "--opt", "rfadamw", "--shape", "32x32", "--n-tensors", "1", "--dtype", "bf16")
    assert code == 0
    by = pd.read_parquet(files[0]).set_index("label")
    assert by.loc["rfadamw", "param_dtype"] == "bfloat16"
    assert by.loc["rfadamw", "state_bytes_per_param"] == 4.0
    assert by.loc["rfadamw", "traffic_floor_bytes_per_param"] == 14  # the paper, all bf16


def test_transient_peak_is_measured_in_a_fresh_process():
    case = bench_optim.Case("tiny", "fp32", [bench_optim.Entry("rfadamw")], shapes=[[256, 256]] * 2)
    out = bench_optim.peak_in_subprocess(case, case.entries[0], threads=1, timeout=300)
    assert out["peak_kind"] in ("rss_hwm_reset", "ru_maxrss", "ru_maxrss_unresolved"), out
    if out["peak_kind"] != "ru_maxrss_unresolved":
        assert math.isfinite(out["peak_bytes_per_param"]) and out["peak_bytes_per_param"] >= 0


@pytest.mark.parametrize("argv,message", [
    (["--opt", "rfadamm"], "rfadamw"),  # unknown optimizer: close matches
    (["--shape", "10xfoo"], "--shape"),
    (["--opt", "rfadamw:not_a_knob=1"], "unknown hyperparameter"),
])
def test_bad_input_is_a_usage_error_and_writes_nothing(tmp_path, capsys, argv, message):
    code, files = run_cli(tmp_path, *argv)
    assert code == 2 and not files
    assert message in capsys.readouterr().err


def test_default_suite_covers_the_acceptance_cases():
    cases = {c.name: c for c in bench_optim.default_suite()}
    diag = [c for c in cases.values() if c.name.startswith("diag-")]
    assert {c.dtype for c in diag} == {"fp32", "bf16"}
    for c in diag:
        assert sum(math.prod(s) for s in c.shapes) >= 16 * 2**20
        assert any(e.name == "rfrmsprop" and e.hparams.get("momentum") == 0.9 for e in c.entries)
    mlp = [c for c in cases.values() if c.model == "mlp512"]
    assert {c.dtype for c in mlp} == {"fp32", "bf16"}
    assert all({e.T for e in c.entries if e.name == "ifshampoo"} == {1, 10} for c in mlp)
    square = [c for c in cases.values() if c.name.startswith("square1024")]
    assert square and {e.name for e in square[0].entries} == {"ifshampoo", "shampoo"}

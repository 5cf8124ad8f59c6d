"""``rootbench bench-optim`` runs and its numbers are sane (tiny shapes, a few steps; no speed thresholds)."""

from __future__ import annotations

import glob
import json
import math
import os

import pandas as pd
import pytest
import torch

from rootbench.harness import bench_cases, bench_optim, bench_timing, kron_floor
from rootbench.harness.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_cli(tmp_path, *extra):
    runs = str(tmp_path / "runs")
    code = main(
        [
            "bench-optim",
            "--threads",
            "1",
            "--rounds",
            "2",
            "--min-run-time",
            "0.01",
            "--no-peak",
            "--quiet",
            "--runs",
            runs,
            *extra,
        ]
    )
    files = glob.glob(os.path.join(runs, "bench-optim", "*.parquet"))
    return code, files


def test_bench_optim_runs_and_reports_sane_numbers(tmp_path, capsys):
    opts = "rfadamw,rfrmsprop:momentum=0.9,sgd,ifshampoo,shampoo"
    opts += ",sirfshampoo" if bench_cases.EXTERNAL["sirfshampoo"].available() else ""
    code, files = run_cli(tmp_path, "--opt", opts, "--shape", "16x8", "8", "--n-tensors", "2", "--T", "1,2")
    assert code == 0 and len(files) == 1
    out = capsys.readouterr().out
    assert "xAdamW" in out and "rfrmsprop[momentum=0.9]" in out
    df = pd.read_parquet(files[0])
    n = 2 * (16 * 8 + 8)
    assert set(df["n_params"]) == {n}
    assert (df["threads"] == 1).all() and {"git_sha", "torch_version", "cpu", "load_avg_start"} <= set(df.columns)
    assert (df["device"] == "cpu").all()
    for col in ("step_time_s", "ratio_adamw", "probe_add_GBps", "first_step_s"):
        assert (df[col] > 0).all() and df[col].map(math.isfinite).all(), col
    assert df["finite"].all()
    by = df.set_index("label")
    assert by.loc["adamw[impl=fused]", "ratio_adamw"] == 1.0
    # what ran: the implementation the optimizer says it used (rfadamw's impl=auto picks one by size)
    assert by.loc["adamw[impl=fused]", "impl"] == "fused" and by.loc["sgd", "impl"] == "fused"
    case = bench_cases.Case("c", "fp32", [], shapes=[[16, 8], [8]] * 2)
    rf = bench_cases.build_optimizer(case, bench_cases.Entry("rfadamw"), bench_cases.build_params(case, torch.float32))
    rf.step()
    assert by.loc["rfadamw", "impl"] == rf.impl_used and by.loc["ifshampoo T=1", "impl"] == "batched"
    # exact state bytes: two fp32 buffers per parameter; fused AdamW adds a 4-byte step per tensor
    assert by.loc["rfadamw", "state_bytes_per_param"] == 8.0
    assert by.loc["rfrmsprop[momentum=0.9]", "state_bytes_per_param"] == 8.0
    assert by.loc["sgd", "state_bytes_per_param"] == 4.0
    assert by.loc["adamw[impl=fused]", "state_bytes"] == 8 * n + 4 * 4
    # traffic floors of the paper (fp32): AdamW / RF-AdamW / RF-RMSProp+momentum 28, SGD+momentum 20
    assert list(
        by.loc[["adamw[impl=fused]", "rfadamw", "rfrmsprop[momentum=0.9]", "sgd"], "traffic_floor_bytes_per_param"]
    ) == [28, 28, 28, 20]
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
    # the Kronecker floor: what ran equals what the method's math needs; diagonal rows have none
    assert (periodic["gemm_flops"] > 0).all() and (periodic["gemm_GFLOPs"] > 0).all()
    assert (periodic["achieved"] > 0).all() and (periodic["gemm_calls"] > 0).all()
    ours = periodic[periodic["optimizer"] != "sirfshampoo"]
    assert (ours["gemm_flops"] == ours["gemm_flops_analytic"]).all()
    assert (shampoo["eigh_floor_s"] > 0).all() and (shampoo["eigh_calls"] > 0).all()
    assert df[df["optimizer"] == "ifshampoo"]["eigh_floor_s"].isna().all()
    assert df[df["preconditioner"] != "kronecker"]["gemm_flops"].isna().all()
    assert "Kronecker floor" in out


def test_bench_optim_bf16_diagonal_state_is_half(tmp_path):
    code, files = run_cli(tmp_path, "--opt", "rfadamw", "--shape", "32x32", "--n-tensors", "1", "--dtype", "bf16")
    assert code == 0
    by = pd.read_parquet(files[0]).set_index("label")
    assert by.loc["rfadamw", "param_dtype"] == "bfloat16"
    assert by.loc["rfadamw", "state_bytes_per_param"] == 4.0
    assert by.loc["rfadamw", "traffic_floor_bytes_per_param"] == 14  # the paper, all bf16


def test_transient_peak_is_measured_in_a_fresh_process():
    case = bench_cases.Case("tiny", "fp32", [bench_cases.Entry("rfadamw")], shapes=[[256, 256]] * 2)
    out = bench_timing.peak_in_subprocess(case, case.entries[0], threads=1, timeout=300)
    assert out["peak_kind"] in ("rss_hwm_reset", "ru_maxrss", "ru_maxrss_unresolved"), out
    if out["peak_kind"] != "ru_maxrss_unresolved":
        assert math.isfinite(out["peak_bytes_per_param"]) and out["peak_bytes_per_param"] >= 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--opt", "rfadamm"], "rfadamw"),  # unknown optimizer: close matches
        (["--shape", "10xfoo"], "--shape"),
        (["--opt", "rfadamw:not_a_knob=1"], "unknown hyperparameter"),
        (["--device", "tpu"], "not a torch device"),
        (["--device", "mps"], "runs on cpu or cuda"),
    ]
    + ([(["--device", "cuda"], "CUDA is not available")] if not torch.cuda.is_available() else []),
)
def test_bad_input_is_a_usage_error_and_writes_nothing(tmp_path, capsys, argv, message):
    code, files = run_cli(tmp_path, *argv)
    assert code == 2 and not files
    assert message in capsys.readouterr().err


def test_default_suite_covers_the_acceptance_cases():
    cases = {c.name: c for c in bench_cases.default_suite()}
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


def test_task_floor_table_runs_the_kronecker_methods_on_the_task_shapes(tmp_path, capsys):
    code, files = run_cli(tmp_path, "--task", "quadratic")
    assert code == 0 and len(files) == 1
    df = pd.read_parquet(files[0])
    kron = df[df["preconditioner"] == "kronecker"]
    # every registered Kronecker method that is not a variant of another, at its default period
    assert set(kron["optimizer"]) == set(bench_optim.kronecker_names()) >= {"ifshampoo", "shampoo"}
    assert "ifshampoo_paper" not in set(kron["optimizer"])
    assert set(kron["T"]) == {2} and set(df["task"]) == {"quadratic"}
    assert json.loads(kron["shapes"].iloc[0]) == [[4, 32], [4]]  # the quick tier's Linear(32, 4)
    assert (kron["gemm_flops"] == kron["gemm_flops_analytic"]).all() and kron["achieved"].gt(0).all()
    out = capsys.readouterr().out
    assert "Kronecker floor" in out and "quadratic-fp32" in out


def test_task_shapes_come_from_the_quick_tier_model_without_its_data():
    names, shapes = bench_optim.task_parameters("cifar10-resnet")  # CIFAR-10 is not read: the synthetic stand-in
    assert len(names) == len(shapes) == 62 and [128, 128, 3, 3] in shapes and names[0].startswith("stem")
    names, shapes = bench_optim.task_parameters("shakespeare-char-gpt")
    assert shapes[0] == [65, 128]  # tinyshakespeare's 65 characters, tied head


@pytest.mark.parametrize(
    "name,hp",
    [
        ("ifshampoo", {}),
        ("ifshampoo", {"impl": "reference"}),
        ("ifshampoo", {"preconditioner_dtype": "bfloat16"}),
        ("shampoo", {}),
        ("shampoo", {"impl": "reference"}),
    ],
)
@pytest.mark.parametrize("T", [1, 3])
def test_recorded_matmul_flops_equal_the_declared_count(name, hp, T):
    """The multiplies a period runs (all of them, at any shape) are exactly those the method's math needs."""
    case = bench_cases.Case("c", "fp32", [], shapes=[[6, 5], [6, 5], [4, 3, 2, 2], [7], [], [1, 1, 5], [3, 1]])
    entry = bench_cases.Entry(name, hp, T=T)
    opt = bench_cases.build_optimizer(case, entry, bench_cases.build_params(case, torch.float32))
    opt.step()  # as the benchmark: one untimed step; record_floor steps past Shampoo's first root (step T)
    floor = kron_floor.record_floor(opt, T)
    assert floor.rec.flops / T == floor.analytic > 0
    assert bool(floor.rec.eighs) == (name == "shampoo")


def test_gemm_recorder_counts_what_matmul_tensordot_and_einsum_become():
    a, b, v = torch.randn(3, 4), torch.randn(4, 5), torch.randn(4)
    with kron_floor.GemmRecorder() as rec:
        torch.tensordot(a, b, dims=([1], [0]))  # mm 3x4x5
        a @ v  # mv
        v @ v  # dot
        torch.einsum("bij,bjk->bik", torch.randn(2, 3, 4), torch.randn(2, 4, 5))  # bmm
        torch.randn(2, 3, 5).baddbmm_(torch.randn(2, 3, 4), torch.randn(2, 4, 5))
        torch.linalg.eigh(torch.eye(3))
    assert rec.flops == 2 * (3 * 4 * 5 + 3 * 4 + 4 + 2 * 3 * 4 * 5 + 2 * 3 * 4 * 5)
    assert len(rec.gemms) == 5 and [A.shape for A in rec.eighs] == [(1, 3, 3)]


def test_task_cannot_be_combined_with_shapes(tmp_path, capsys):
    code, files = run_cli(tmp_path, "--task", "quadratic", "--shape", "4x4")
    assert code == 2 and not files and "--task" in capsys.readouterr().err


@pytest.mark.gpu
def test_bench_optim_runs_on_cuda(tmp_path):
    """--device cuda: parameters, state and probes on the GPU; the peak is the caching allocator's."""
    code, files = run_cli(
        tmp_path, "--device", "cuda", "--opt", "rfadamw,ifshampoo", "--shape", "64x32", "--n-tensors", "2"
    )
    assert code == 0
    df = pd.read_parquet(files[0])
    assert df["device"].str.startswith("cuda").all()
    assert (df["step_time_s"] > 0).all() and df["finite"].all()
    case = bench_cases.Case("c", "fp32", [bench_cases.Entry("rfadamw")], shapes=[[256, 256]] * 2, device="cuda")
    peak = bench_timing.peak_on_cuda(case, case.entries[0])
    assert peak["peak_kind"] == "cuda_max_allocated" and peak["peak_bytes_per_param"] >= 0

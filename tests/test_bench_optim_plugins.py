"""``bench-optim`` treats an optimizer by what it declares, not by its name: Kronecker and diagonal optimizers
registered from outside the repository (under names and knob names that give nothing away) are benchmarked
exactly like IF-Shampoo, Shampoo and RF-AdamW, without editing ``harness/bench_optim.py``."""

from __future__ import annotations

import glob
import math
import os
import runpy
import subprocess
import sys

import pandas as pd
import pytest
import torch

from rootbench.harness import bench_cases, bench_timing
from rootbench.harness.cli import main
from rootbench.harness.registry import OPTIMIZERS

# Thin wrappers of the in-house classes whose preconditioner period is called ``every`` / ``refresh``, not T
PLUGIN = '''
from rootbench.optimizers import register_optimizer
from rootbench.optimizers.ifshampoo import IFShampoo
from rootbench.optimizers.rfadamw import RFAdamW
from rootbench.optimizers.shampoo import Shampoo


def outside_kron(params, lr: float = 1e-3, momentum: float = 0.9, lr_cov: float = 5e-2,
                 riemannian_momentum: float = 0.5, damping: float = 1e-4, batch_size: int | None = None,
                 schedule: str = "prototype_log4", every: int = 2, preconditioner_dtype: str = "param",
                 momentum_dtype: str = "param"):
    """An inverse-free Kronecker method (IF-Shampoo's update) whose period knob is ``every``."""
    return IFShampoo(params, lr=lr, momentum=momentum, lr_cov=lr_cov, riemannian_momentum=riemannian_momentum,
                     damping=damping, batch_size=batch_size, schedule=schedule, T=every,
                     preconditioner_dtype=preconditioner_dtype, momentum_dtype=momentum_dtype)


def outside_rooted(params, lr: float = 1e-2, momentum: float = 0.9, lr_cov: float = 1e-2, damping: float = 1e-6,
                   refresh: int = 2, preconditioner_dtype: str = "param"):
    """A Kronecker method with eigh inverse roots (Shampoo's update) whose period knob is ``refresh``."""
    return Shampoo(params, lr=lr, momentum=momentum, lr_cov=lr_cov, damping=damping, T=refresh,
                   preconditioner_dtype=preconditioner_dtype)


def outside_fixed_dtype(params, lr: float = 1e-3, every: int = 1, batch_size: int | None = None):
    """A Kronecker method without a factor-dtype knob."""
    return IFShampoo(params, lr=lr, T=every, schedule="every_T", batch_size=batch_size)


class OutsideDiag(RFAdamW):
    """RF-AdamW's update under another name."""


register_optimizer("outside_kron", outside_kron, family="outside", preconditioner="kronecker",
                   period_hparam="every", needs_batch_size=True)
register_optimizer("outside_rooted", outside_rooted, family="outside", preconditioner="kronecker",
                   period_hparam="refresh")
register_optimizer("outside_fixed_dtype", outside_fixed_dtype, family="outside", preconditioner="kronecker",
                   period_hparam="every", needs_batch_size=True)
register_optimizer("outside_diag", OutsideDiag, family="outside", preconditioner="diagonal", needs_batch_size=True)
'''
PLUGIN_NAMES = ("outside_kron", "outside_rooted", "outside_fixed_dtype", "outside_diag")
ARGS = ["--threads", "1", "--rounds", "2", "--min-run-time", "0.01", "--no-peak", "--quiet"]


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "outside_optimizers.py"
    path.write_text(PLUGIN)
    return path


@pytest.fixture
def registered(plugin_file):
    """The plugin's optimizers registered in this process, removed afterwards."""
    threads = torch.get_num_threads()
    runpy.run_path(str(plugin_file))
    yield
    for name in PLUGIN_NAMES:
        OPTIMIZERS.pop(name, None)
    torch.set_num_threads(threads)


def read_results(runs) -> pd.DataFrame:
    files = glob.glob(os.path.join(str(runs), "bench-optim", "*.parquet"))
    assert len(files) == 1, files
    return pd.read_parquet(files[0])


def test_an_outside_kronecker_optimizer_is_benchmarked_like_ifshampoo(tmp_path, plugin_file):
    runs = tmp_path / "runs"
    env = {**os.environ, "ROOTBENCH_OPTIMIZERS": str(plugin_file)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rootbench.harness",
            "bench-optim",
            *ARGS,
            "--runs",
            str(runs),
            "--opt",
            "ifshampoo,outside_kron,shampoo,outside_rooted",
            "--shape",
            "16x8",
            "8",
            "--n-tensors",
            "2",
            "--T",
            "1,2",
            "--dtype",
            "bf16",
        ],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    df = read_results(runs)
    by = df.set_index("label")
    # a case of Kronecker methods only: fused AdamW on fp32 parameters, as for IF-Shampoo alone
    assert by.loc["adamw[impl=fused]", "param_dtype"] == "float32"
    for ours, twin in (("outside_kron", "ifshampoo"), ("outside_rooted", "shampoo")):
        assert set(df[df["optimizer"] == ours]["T"]) == {1, 2}  # periodic: timed at every --T
        for T in (1, 2):
            row, ref = by.loc[f"{ours} T={T}"], by.loc[f"{twin} T={T}"]
            assert row["preconditioner"] == "kronecker" and row["family"] == "outside"
            assert row["param_dtype"] == ref["param_dtype"] == "float32"  # --dtype is the factors' dtype
            assert row["impl"] == ref["impl"]
            assert row["state_bytes"] == ref["state_bytes"]  # same factors in the same (bf16) dtype
            assert math.isnan(row["traffic_floor_bytes_per_param"]) and math.isnan(row["ratio_floor"])
            assert row["update_step_s"] > 0 and math.isfinite(row["update_step_s"])
            if T == 1:  # every step updates the preconditioner
                assert math.isnan(row["regular_step_s"]) and math.isnan(ref["regular_step_s"])
            else:
                assert row["regular_step_s"] > 0 and math.isfinite(row["regular_step_s"])
            assert row["finite"]
    # K and m_K per axis in bf16 (a 16x8 weight: 16^2 + 8^2; a bias: 8^2), the momentum buffer in fp32
    n = 2 * (16 * 8 + 8)
    assert by.loc["outside_kron T=1", "state_bytes"] == 2 * (2 * (16 * 16 + 8 * 8) + 2 * 8 * 8) * 2 + n * 4
    # the eigh share is measured: methods whose steps call eigh have one, the inverse-free ones have none
    for T in (1, 2):
        assert 0 < by.loc[f"outside_rooted T={T}", "eigh_share"] <= 1
        assert math.isnan(by.loc[f"outside_kron T={T}", "eigh_share"])
        assert math.isnan(by.loc[f"ifshampoo T={T}", "eigh_share"])


def test_an_outside_diagonal_optimizer_is_benchmarked_like_rfadamw(tmp_path, registered):
    runs = tmp_path / "runs"
    code = main(
        [
            "bench-optim",
            *ARGS,
            "--runs",
            str(runs),
            "--opt",
            "rfadamw,outside_diag",
            "--shape",
            "32x32",
            "--n-tensors",
            "1",
            "--dtype",
            "fp32",
            "bf16",
            "--T",
            "1,2",
        ]
    )
    assert code == 0
    df = read_results(runs)
    assert set(df["label"]) == {"adamw[impl=fused]", "rfadamw", "outside_diag"}  # no period: --T does not apply
    for dtype, floor in (("fp32", 28), ("bf16", 14)):  # methods.md 7.4
        by = df[df["dtype"] == dtype].set_index("label")
        row, ref = by.loc["outside_diag"], by.loc["rfadamw"]
        assert row["preconditioner"] == "diagonal" and row["T"] == 1
        assert row["param_dtype"] == ref["param_dtype"] == by.loc["adamw[impl=fused]", "param_dtype"]
        assert row["param_dtype"] == str(bench_cases.DTYPES[dtype]).replace("torch.", "")
        assert row["state_bytes_per_param"] == ref["state_bytes_per_param"]
        assert row["traffic_floor_bytes_per_param"] == ref["traffic_floor_bytes_per_param"] == floor
        assert all(math.isnan(row[c]) for c in ("update_step_s", "regular_step_s", "eigh_share"))


def test_outside_optimizers_get_the_hyperparameters_of_their_kind(registered):
    case = bench_cases.Case("c", "bf16", [], shapes=[[4, 4]])
    ours = bench_cases.benchmark_hparams(case, bench_cases.Entry("outside_kron", T=3))
    twin = bench_cases.benchmark_hparams(case, bench_cases.Entry("ifshampoo", T=3))
    assert ours.pop("every") == twin.pop("T") == 3  # the declared period_hparam carries T
    assert ours == {k: v for k, v in twin.items() if k in bench_cases.capabilities("outside_kron").defaults}
    assert ours["schedule"] == "every_T" and ours["preconditioner_dtype"] == "bfloat16" and ours["batch_size"] == 128
    assert bench_cases.benchmark_hparams(case, bench_cases.Entry("outside_diag")) == {"batch_size": 128}


@pytest.mark.parametrize("T", [2, 3])
@pytest.mark.parametrize("ours,twin", [("outside_kron", "ifshampoo"), ("outside_rooted", "shampoo")])
def test_the_update_step_of_a_period_is_measured(registered, ours, twin, T):
    """Shampoo computes roots at 1-based step multiples of T, IF-Shampoo at 0-based ones: the probe finds both."""
    case = bench_cases.Case("c", "fp32", [], shapes=[[8, 4], [4]])
    phases = []
    for name in (ours, twin):
        entry = bench_cases.Entry(name, T=T)
        opt = bench_cases.build_optimizer(case, entry, bench_cases.build_params(case, torch.float32))
        opt.step()  # one step taken, as in the benchmark
        phases.append(bench_timing.update_phase(opt, T))
    # after one step the next update is Shampoo's 1-based step T, IF-Shampoo's 0-based step T
    expected = {("shampoo", 2): 0, ("shampoo", 3): 1, ("ifshampoo", 2): 1, ("ifshampoo", 3): 2}[(twin, T)]
    assert phases == [expected, expected]


def test_a_kronecker_method_without_a_factor_dtype_knob_cannot_claim_bf16(tmp_path, registered, capsys):
    code = main(
        [
            "bench-optim",
            *ARGS,
            "--runs",
            str(tmp_path / "runs"),
            "--opt",
            "outside_fixed_dtype",
            "--shape",
            "8x4",
            "--dtype",
            "bf16",
        ]
    )
    assert code == 2 and "preconditioner_dtype" in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / "runs" / "bench-optim" / "*.parquet"))

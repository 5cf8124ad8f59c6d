"""Optimizers registered from outside the repository: a file named by ROOTBENCH_OPTIMIZERS, or an
installed package's entry point in the group ``rootbench.optimizers``."""

import os
import subprocess
import sys
import textwrap

import pytest

PLUGIN = textwrap.dedent('''
    import torch
    from rootbench.optimizers import register_optimizer

    def my_sgd(params, lr: float = 0.05, momentum: float = 0.5):
        """An outside SGD variant."""
        return torch.optim.SGD(params, lr=lr, momentum=momentum)

    register_optimizer("{name}", my_sgd, parent="sgd", family="sgd")
''')


def run_python(code, env_extra, tmp_path):
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_a_file_named_by_the_environment_registers_an_optimizer(tmp_path):
    plugin = tmp_path / "my_variant.py"
    plugin.write_text(PLUGIN.format(name="outside_sgd"))
    out = run_python(
        "from rootbench.optimizers import list_optimizers, get_optimizer_spec as g; "
        "print('outside_sgd' in list_optimizers(), g('outside_sgd').parent)",
        {"ROOTBENCH_OPTIMIZERS": str(plugin)},
        tmp_path,
    )
    assert out.split() == ["True", "sgd"]


def test_an_installed_entry_point_registers_an_optimizer(tmp_path):
    pkg = tmp_path / "site"
    (pkg / "ext_opt").mkdir(parents=True)
    (pkg / "ext_opt" / "__init__.py").write_text(PLUGIN.format(name="entry_point_sgd"))
    dist = pkg / "ext_opt-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ext-opt\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rootbench.optimizers]\nentry_point_sgd = ext_opt\n")
    out = run_python(
        "from rootbench.optimizers import list_optimizers; print('entry_point_sgd' in list_optimizers())",
        {"PYTHONPATH": str(pkg)},
        tmp_path,
    )
    assert out.strip() == "True"


def test_a_missing_plugin_file_is_one_warning_and_the_rest_still_work(tmp_path):
    code = (
        "from rootbench.optimizers import list_optimizers, get_optimizer_spec\n"
        "print('adamw' in list_optimizers())\n"
        "try:\n    get_optimizer_spec('my_missing')\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        env={**os.environ, "ROOTBENCH_OPTIMIZERS": str(tmp_path / "nope.py")},
        timeout=120,
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "True" and lines[1].startswith("UsageError") and "nope.py" in lines[1]
    warnings = [ln for ln in out.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "nope.py" in warnings[0] and "Traceback" not in out.stderr


RAISING = """
import torch
from rootbench.optimizers import register_optimizer

register_optimizer("fine_sgd", lambda params, lr=0.1: torch.optim.SGD(params, lr=lr), family="sgd",
                   preconditioner="none")
raise RuntimeError("this plugin is broken on purpose")
"""


def test_a_raising_plugin_fails_only_the_commands_that_need_it(tmp_path):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text(RAISING)
    env = {**os.environ, "ROOTBENCH_OPTIMIZERS": str(plugin)}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "rootbench.harness", *args],
            cwd=str(tmp_path),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    listing = cli("list", "optimizers")
    assert listing.returncode == 0 and "adamw" in listing.stdout and "Traceback" not in listing.stderr
    assert listing.stderr.count("broken_plugin.py") == 1 and "broken on purpose" in listing.stderr
    runs = str(tmp_path / "runs")
    ok = cli(
        "bench", "--task", "quadratic", "--opt", "sgd", "--tier", "smoke", "--ref-steps", "0", "--quiet", "--runs", runs
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    needs = cli("bench", "--task", "quadratic", "--opt", "fine_sgd", "--tier", "smoke", "--runs", runs)
    assert needs.returncode == 2 and "Traceback" not in needs.stderr  # registered, then withdrawn
    error = [ln for ln in needs.stderr.splitlines() if ln.startswith("rootbench: error")]
    assert len(error) == 1 and "broken_plugin.py" in error[0] and "broken on purpose" in error[0]


def test_a_name_that_could_leave_the_runs_folder_is_refused(tmp_path):
    from rootbench.harness import records
    from rootbench.harness.registry import UsageError, register_optimizer

    for bad in ("../escape", "a/b", "..", ".hidden", "x" * 101, ""):
        with pytest.raises(UsageError, match="invalid optimizer name"):
            register_optimizer(bad, lambda params: None)
        with pytest.raises(UsageError):
            records.run_path(str(tmp_path), "quadratic", bad, "abc")
    assert not os.listdir(tmp_path)


def test_the_zoo_says_how_to_install_what_is_missing(tmp_path):
    """The zoo registers through its entry point; without its packages its entries are listed as not installed
    and naming one says the command, instead of "unknown optimizer"."""
    blocker = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pytorch_optimizer", "schedulefree"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
        from rootbench.harness.cli import main
        from rootbench.harness.registry import RegistryError
        from rootbench.optimizers import get_optimizer_spec, list_optimizers
        main(["list", "optimizers"])
        try:
            get_optimizer_spec("soap")
        except RegistryError as e:
            print("ERROR", e)
        print("LISTED", "adafactor" in list_optimizers(), "soap" in list_optimizers())
    """)
    out = run_python(blocker, {}, tmp_path)
    assert "not installed" in out and "pip install 'rootbench[zoo]'" in out
    assert "ERROR optimizer 'soap' is not installed: it needs pytorch_optimizer" in out
    assert "LISTED True False" in out  # torch's Adafactor needs no extra package


def test_muon_leaves_vocabulary_sized_matrices_and_vectors_to_adamw():
    """Newton-Schulz products grow with the longer axis squared (10 GB for a 50,257-word embedding): such
    matrices, and every parameter of fewer than 2 dimensions, take Muon's AdamW side."""
    import pytest
    import torch

    from rootbench.optimizers import create_optimizer, list_optimizers

    if "muon" not in list_optimizers():
        pytest.skip("the zoo's packages are not installed")
    model = torch.nn.ModuleDict({"embed": torch.nn.Embedding(10_000, 16), "hidden": torch.nn.Linear(16, 16)})
    opt = create_optimizer("muon", model)
    by_muon = {g["use_muon"]: {tuple(p.shape) for p in g["params"]} for g in opt.param_groups}
    assert by_muon[True] == {(16, 16)} and by_muon[False] == {(10_000, 16), (16,)}

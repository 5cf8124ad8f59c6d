"""Optimizers registered from outside the repository: a file named by ROOTBENCH_OPTIMIZERS, or an
installed package's entry point in the group ``rootbench.optimizers``."""
import os
import subprocess
import sys
import textwrap


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
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_a_file_named_by_the_environment_registers_an_optimizer(tmp_path):
    plugin = tmp_path / "my_variant.py"
    plugin.write_text(PLUGIN.format(name="outside_sgd"))
    out = run_python("from rootbench.optimizers import list_optimizers, get_optimizer_spec as g; "
                     "print('outside_sgd' in list_optimizers(), g('outside_sgd').parent)",
                     {"ROOTBENCH_OPTIMIZERS": str(plugin)}, tmp_path)
    assert out.split() == ["True", "sgd"]


def test_an_installed_entry_point_registers_an_optimizer(tmp_path):
    pkg = tmp_path / "site"
    (pkg / "ext_opt").mkdir(parents=True)
    (pkg / "ext_opt" / "__init__.py").write_text(PLUGIN.format(name="entry_point_sgd"))
    dist = pkg / "ext_opt-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ext-opt\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rootbench.optimizers]\nentry_point_sgd = ext_opt\n")
    out = run_python("from rootbench.optimizers import list_optimizers; print('entry_point_sgd' in list_optimizers())",
                     {"PYTHONPATH": str(pkg)}, tmp_path)
    assert out.strip() == "True"


def test_a_missing_plugin_file_is_a_clear_error(tmp_path):
    code = ("from rootbench.optimizers import list_optimizers\n"
            "try:\n    list_optimizers()\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = run_python(code, {"ROOTBENCH_OPTIMIZERS": str(tmp_path / "nope.py")}, tmp_path)
    assert out.startswith("UsageError") and "nope.py" in out

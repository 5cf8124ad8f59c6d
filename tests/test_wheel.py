"""The package as another repository gets it: build the wheel, install it into a fresh venv outside the
checkout, import the optimizers with torch alone, and render a site from the wheel's own templates."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from rootbench.harness import records
from tests.conftest import ROOT


def _sh(*cmd, cwd, env=None, timeout=600):
    out = subprocess.run(list(cmd), cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}: {out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    src = build / "src"  # build from a copy: the checkout keeps no build/ or egg-info litter
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".data", "runs", "site", "__pycache__", "*.egg-info", "build", ".rootbench"
        ),
    )
    _sh(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(dist),
        str(src),
        cwd=build,
    )
    (path,) = dist.glob("rootbench-*.whl")
    return path


def test_the_wheel_installs_one_namespace_with_templates_and_torch_as_its_only_requirement(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"rootbench"}, tops  # no generic top-level harness/, optimizers/, tasks/, leaderboard/
    assert any(n.startswith("rootbench/leaderboard/templates/") and n.endswith(".j2") for n in names)
    assert any(n.startswith("rootbench/leaderboard/static/") for n in names)
    assert "rootbench/optimizers/rfadamw.py" in names and "rootbench/harness/registry.py" in names
    required = [
        ln.split(":", 1)[1].strip()
        for ln in meta.splitlines()
        if ln.startswith("Requires-Dist:") and "extra ==" not in ln
    ]
    assert [r.split(">")[0].split("=")[0].strip() for r in required] == ["torch"], required
    extras = {ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Provides-Extra:")}
    assert {"tasks", "site", "sweeps", "test"} <= extras


@pytest.mark.slow
def test_a_fresh_venv_outside_the_checkout_uses_the_optimizers_and_renders_a_site(wheel, tmp_path):
    venv = tmp_path / "venv"
    _sh(sys.executable, "-m", "venv", str(venv), cwd=tmp_path)
    py = venv / "bin" / "python"
    _sh(str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel), cwd=tmp_path)
    # the heavy dependencies (torch, pandas, jinja2) come from this test's environment, appended after the
    # fresh venv's own packages: a .pth line adds the folder without running its editable-install hooks
    site = _sh(str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    with open(os.path.join(site, "zz_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROOTBENCH_OPTIMIZERS")}
    code = (
        "import sys, torch\n"
        "import rootbench.optimizers as o\n"
        f"assert not o.__file__.startswith({str(ROOT)!r}), o.__file__\n"
        "m = torch.nn.Linear(3, 2)\n"
        "opt = o.create_optimizer('rfadamw', m, lr=0.1, batch_size=8)\n"
        "m(torch.randn(8, 3)).pow(2).mean().backward(); opt.step()\n"
        "heavy = sorted(x for x in ('pandas', 'pyarrow', 'jinja2', 'timm', 'torchvision') if x in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(len(o.list_optimizers()))\n"
    )
    assert int(_sh(str(py), "-c", code, cwd=tmp_path, env=env).strip()) >= 7
    runs = tmp_path / "runs"
    for path in records.find_runs(os.path.join(ROOT, "runs"))[:4]:
        dst = runs / os.path.relpath(path, os.path.join(ROOT, "runs"))
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
    _sh(
        str(venv / "bin" / "rootbench"),
        "site",
        "--runs",
        str(runs),
        "--out",
        str(tmp_path / "site"),
        cwd=tmp_path,
        env=env,
    )
    index = (tmp_path / "site" / "index.html").read_text()
    assert "rootbench" in index and (tmp_path / "site" / "static").is_dir()


def test_needs_names_what_an_interpreter_lacks_from_pyproject():
    """``harness/needs.py`` (run before ``make install SYSTEM_PACKAGES=1``) reads the requirements from
    pyproject.toml, expands nested extras, and names the missing distributions; lazily imported ones are notes."""
    import importlib.util
    import tomllib

    spec = importlib.util.spec_from_file_location("needs", os.path.join(ROOT, "harness", "needs.py"))
    needs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(needs)
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        pyproject = tomllib.load(f)
    names = needs.requirement_names(pyproject, ["test"])  # rootbench[tasks,site,sweeps,zoo] expanded
    assert {"torch", "timm", "jinja2", "ray", "schedulefree", "pytest"} <= set(names)
    assert not any(n.startswith("rootbench") for n in names) and len(names) == len(set(names))
    assert needs.missing(["torch", "no-such-distribution-rootbench"]) == ["no-such-distribution-rootbench"]
    assert needs.main(["tasks", "site"]) == 0  # this environment has them all


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_system_install_names_what_is_missing_before_installing_anything(tmp_path):
    """``make install SYSTEM_PACKAGES=1`` on an interpreter without the packages (here: site-packages off) stops
    at the check, with one line naming them; pip never runs and no install stamp is left."""
    out = subprocess.run(
        ["make", "-s", "install", "SYSTEM_PACKAGES=1", f"PYTHON={sys.executable} -S"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in out.stderr.splitlines() if line.startswith("needs:")]
    assert out.returncode != 0 and len(lines) == 1 and "lacks torch" in lines[0], out.stderr
    assert "pip" not in out.stdout and not os.path.exists(os.path.join(ROOT, ".rootbench-system-install"))

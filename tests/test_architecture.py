"""The code's shape, held as contracts: who may import what, one cache rule, one writer of runs/.

The registry contract (``harness/registry.py``, ``harness/config.py``) sits at the bottom: optimizers and
tasks import nothing of the harness above it. Nothing imports the CLI (it imports the rest). Every module
imports rootbench through its one namespace. ``execute.cached_record`` is the only caller of the store's
lookup, and file-writing primitives appear only where the file is not under ``runs/`` (the site's output
folder, the data cache, ``/proc``) or in ``harness/records.py``, which writes every file under ``runs/``.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "optimizers", "tasks", "leaderboard")
CONTRACT = {"rootbench.harness", "rootbench.harness.registry", "rootbench.harness.config"}


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield "rootbench." + ".".join(parts), path, ast.parse(path.read_text(), filename=str(path))


MODULES = list(_modules())


def _imported(name: str, path: pathlib.Path, tree) -> set[str]:
    """Absolute names of every module ``tree`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _calls(tree):
    """(dotted callee, enclosing function name) of every call in ``tree``."""

    def walk(node, fn):
        for child in ast.iter_child_nodes(node):
            here = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            if isinstance(child, ast.Call):
                f = child.func
                parts = []
                while isinstance(f, ast.Attribute):
                    parts.append(f.attr)
                    f = f.value
                if isinstance(f, ast.Name):
                    parts.append(f.id)
                yield ".".join(reversed(parts)), here, child
            yield from walk(child, here)

    yield from walk(tree, "<module>")


def test_the_scan_sees_every_module():
    names = {n for n, _, _ in MODULES}
    assert {
        "rootbench.harness.records",
        "rootbench.optimizers.rfadamw",
        "rootbench.tasks._images",
        "rootbench.leaderboard.build",
    } <= names


@pytest.mark.parametrize(
    "name,path,tree",
    [m for m in MODULES if m[0].startswith(("rootbench.optimizers", "rootbench.tasks"))],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_optimizers_and_tasks_import_only_the_contract_of_the_harness(name, path, tree):
    def allowed(m):  # the contract modules, and names imported from them (registry.register_task)
        return m in CONTRACT or (m.rpartition(".")[0] in CONTRACT and m.rpartition(".")[0] != "rootbench.harness")

    above = {m for m in _imported(name, path, tree) if m.startswith("rootbench.harness") and not allowed(m)}
    assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}, above the registry contract"


def test_nothing_imports_the_cli():
    offenders = [
        str(p.relative_to(ROOT))
        for n, p, t in MODULES
        if "rootbench.harness.cli" in _imported(n, p, t) and n not in ("rootbench.harness.__main__",)
    ]
    assert not offenders, f"{offenders} import the CLI; commands raise UsageError instead of calling cli helpers"


def test_every_import_of_rootbench_goes_through_its_namespace():
    bare = []
    for _, p, t in MODULES + [(f"tests.{q.stem}", q, ast.parse(q.read_text())) for q in (ROOT / "tests").rglob("*.py")]:
        for node in ast.walk(t):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            )
            bare += [f"{p.relative_to(ROOT)}: {m}" for m in names if m.split(".")[0] in PACKAGES]
    assert not bare, f"top-level imports that shadow the installed namespace: {bare}"


def test_one_function_decides_cache_hits():
    callers = [
        (str(p.relative_to(ROOT)), fn)
        for n, p, t in MODULES
        for callee, fn, _ in _calls(t)
        if callee.split(".")[-1] == "lookup" and callee != "lookup" or callee == "records.lookup"
    ]
    assert callers == [("harness/execute.py", "cached_record")], callers


# primitive -> where it may be called and why (nothing here writes under runs/ except records.py)
WRITERS = {
    "os.replace",
    "os.rename",
    "os.remove",
    "os.unlink",
    "os.link",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.copy",
    "tempfile.mkstemp",
    "np.savez",
    "pq.write_table",
    "to_parquet",
    "write_text",
    "write_bytes",
}
ALLOWED = {
    "rootbench.harness.records": "the store: every file under runs/",
    "rootbench.tasks.data": "the data root (downloaded and converted data sets)",
    "rootbench.tasks.mnist1d": "the data root (the generated MNIST-1D cache)",
    "rootbench.leaderboard.build": "the site's --out folder",
    "rootbench.leaderboard.site": "the site's --out folder",
    "rootbench.leaderboard.pages": "the site's --out folder",
    "rootbench.leaderboard.exports": "the site's --out folder",
    "rootbench.leaderboard.cache": "the site's --out folder",
    "rootbench.leaderboard.bench_build": "synthetic runs in a temporary folder (the scale benchmark)",
}


def _opens_for_writing(call: ast.Call) -> bool:
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax+")


def test_only_the_store_writes_under_runs():
    found = []
    for n, p, t in MODULES:
        for callee, fn, call in _calls(t):
            if callee.startswith("records."):  # the store's own functions: writing through it is the point
                continue
            writes = (
                callee in WRITERS
                or callee.split(".")[-1] in ("to_parquet", "write_table", "write_text")
                or (callee == "open" and _opens_for_writing(call))
            )
            if writes and n not in ALLOWED:
                found.append(f"{p.relative_to(ROOT)}:{call.lineno} {callee} in {fn}")
    # files that are neither runs nor site: the kernel's memory counter, a user-named Markdown file, and the
    # per-run lock files in the system's temp folder
    expected = {
        ("harness/measure.py", "reset_cpu_peak"),
        ("harness/regress.py", "cmd_regress"),
        ("harness/execute.py", "run_lock"),
    }
    unexpected = [f for f in found if (f.split(":")[0], f.rsplit(" in ", 1)[1]) not in expected]
    assert not unexpected, f"files written outside harness/records.py: {unexpected}"

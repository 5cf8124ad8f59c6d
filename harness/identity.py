"""Which code a run executes, as one hash: the content of every rootbench module it can import.

A run's identity must change when any code it runs changes, not only the file that registered the
optimizer or the task: an edit to a shared helper (``optimizers/_compiled.py``, ``tasks/_images.py``)
or to the runner has to be a cache miss. ``closure(files)`` follows the import statements of those
files, transitively, through every module of the ``rootbench`` namespace (and plugin files named by
path); imports inside functions count, since the lazy ones run too. Third-party code is left out: its
versions are recorded in each run's provenance columns instead.

The scan is static (``ast``), so it never imports or runs anything; results are memoised per file
content, so resolving a sweep's many configurations costs one scan.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os

NAMESPACE = "rootbench"
# the code every run executes besides its optimizer and task: the loop, the measurements, provenance
RUNNER_MODULES = ("rootbench.harness.runner",)


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@functools.cache
def module_file(name: str) -> str | None:
    """The source file of module ``name`` (a package: its ``__init__.py``), without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    origin = getattr(spec, "origin", None) if spec is not None else None
    return os.path.abspath(origin) if origin and origin.endswith(".py") and os.path.isfile(origin) else None


def _package_of(path: str, module: str | None) -> str | None:
    """The package a relative import in ``path`` (module ``module``) is relative to."""
    if module is None:
        return None
    return module if os.path.basename(path) == "__init__.py" else module.rpartition(".")[0]


@functools.cache
def _imports(path: str, digest: str, module: str | None) -> tuple[str, ...]:
    """Module names under ``rootbench`` that the source of ``path`` imports (``digest`` keys the cache)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    found: set[str] = set()
    package = _package_of(path, module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if package is None:
                    continue
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            for alias in node.names:  # `from rootbench.tasks import _images` imports a submodule
                found.add(f"{base}.{alias.name}")
    return tuple(sorted(n for n in found if n == NAMESPACE or n.startswith(NAMESPACE + ".")))


def _module_name(path: str) -> str | None:
    """The dotted name of a file inside the rootbench namespace, or None (a plugin file)."""
    for top in ("harness", "optimizers", "tasks", "leaderboard"):
        f = module_file(f"{NAMESPACE}.{top}")
        if f is None:
            continue
        pkg_dir = os.path.dirname(f)
        if os.path.commonpath([pkg_dir, path]) == pkg_dir:
            rel = os.path.relpath(path, pkg_dir)[:-3].replace(os.sep, ".")
            rel = rel[: -len(".__init__")] if rel.endswith("__init__") else rel
            return f"{NAMESPACE}.{top}" + ("" if rel in ("", "__init__") else f".{rel}")
    return None


def closure(files: list[str], modules: tuple[str, ...] = ()) -> dict[str, str]:
    """``{file: sha256}`` of ``files`` and ``modules`` and every rootbench module they import, transitively.

    A submodule's package ``__init__`` is part of it (importing ``a.b`` runs ``a/__init__.py``).
    """
    todo = [os.path.abspath(f) for f in files if f] + [f for f in map(module_file, modules) if f]
    out: dict[str, str] = {}
    while todo:
        path = todo.pop()
        if path in out or not os.path.isfile(path):
            continue
        digest = file_digest(path)
        out[path] = digest
        for name in _imports(path, digest, _module_name(path)):
            parts = name.split(".")
            for i in range(2, len(parts) + 1):  # the packages on the way run their __init__ too
                f = module_file(".".join(parts[:i]))
                if f and f not in out:
                    todo.append(f)
    return out


def _display(path: str) -> str:
    name = _module_name(path)
    return name if name is not None else os.path.basename(path)


def code_hash(files: list[str], modules: tuple[str, ...] = RUNNER_MODULES) -> str:
    """One hash over the content of all code ``files`` and ``modules`` reach (names, not paths: a clone
    elsewhere hashes the same)."""
    entries = sorted((_display(p), d) for p, d in closure(files, modules).items())
    blob = "\n".join(f"{name} {digest}" for name, digest in entries)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_files(files: list[str], modules: tuple[str, ...] = RUNNER_MODULES) -> list[str]:
    """The module names (or plugin file names) ``code_hash`` covers, sorted: what a run executes."""
    return sorted(_display(p) for p in closure(files, modules))


def run_hash(identity: dict) -> str:
    """A run id: 12 hex digits of the sorted, compact JSON of the run's resolved identity."""
    blob = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]

"""Which of rootbench's packages this interpreter lacks: ``python harness/needs.py [EXTRA ...]``.

``make install SYSTEM_PACKAGES=1`` installs rootbench into an interpreter that already holds torch and the
rest (a CUDA machine without a package index) without downloading anything; this check runs first, so a
missing package is named before anything is installed. It reads the requirements from ``pyproject.toml``
(the core dependencies and the named extras) and runs on its own: nothing of rootbench is imported.
Exit 0 when every package is there; 1, with one line naming what is missing, otherwise. Packages that only
some tasks import, when they run, are reported as a note and do not fail the check.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import tomllib

# imported only by the code that needs them, so an install without them works for everything else
ONLY_WHEN_USED = {
    "mnist1d": "the MNIST-1D tasks generate their data with it",
    "datasets": "Hugging Face downloads of the text data",
}


def requirement_names(pyproject: dict, extras: list[str]) -> list[str]:
    """Distribution names of the core dependencies and of ``extras`` (nested ``rootbench[...]`` expanded)."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"needs: no extra {', '.join(unknown)} in pyproject.toml (extras: {', '.join(optional)})")
    names, todo, seen = [], list(project.get("dependencies", [])), set()
    for extra in extras:
        todo += optional[extra]
    while todo:
        req = todo.pop(0)
        name = re.match(r"[A-Za-z0-9._-]+", req).group(0)
        nested = re.match(rf"{re.escape(project['name'])}\[([^\]]+)\]", req)
        if nested:
            todo += [r for e in nested.group(1).split(",") for r in optional[e.strip()]]
        elif name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names


def missing(names: list[str]) -> list[str]:
    out = []
    for name in names:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def main(argv: list[str]) -> int:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "pyproject.toml"), "rb") as f:
        pyproject = tomllib.load(f)
    lacking = missing(requirement_names(pyproject, argv))
    later = [n for n in lacking if n in ONLY_WHEN_USED]
    now = [n for n in lacking if n not in ONLY_WHEN_USED]
    for name in later:
        print(f"needs: {name} is not installed ({ONLY_WHEN_USED[name]}); everything else works without it")
    if now:
        print(
            f"needs: {sys.executable} lacks {', '.join(now)}; install them into it, or run make install "
            "without SYSTEM_PACKAGES (a virtual environment with everything downloaded)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

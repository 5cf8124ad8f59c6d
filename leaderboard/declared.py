"""What the optimizer and task registries declare, as plain data: the only way the site learns which optimizers
pair up across the square root and which tasks are CNNs.

Reading a registry imports torch and every optimizer and task file (seconds, and ~650 MB of resident memory).
The site therefore asks a short-lived child process (``python -m rootbench.leaderboard.declared`` prints the
declarations as JSON) while its workers read the run files, unless the registries are already imported here
(then the answer, including anything registered at run time, is read in this process). A plugin named by
``ROOTBENCH_OPTIMIZERS`` or an entry point reaches the child the same way, through the environment.
``fingerprint()`` hashes every file the declarations come from, so a rebuild can reuse the previous answer.

    python -m rootbench.leaderboard.declared      # the declarations as JSON
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading

OPTIMIZER_FIELDS = (
    "description",
    "paper",
    "family",
    "root_free",
    "pair",
    "preconditioner",
    "warm_start",
    "eval_mode",
)
TASK_FIELDS = ("description", "family", "model_kind")
PLUGIN_ENV = "ROOTBENCH_OPTIMIZERS"
ENTRY_POINT_GROUPS = ("rootbench.optimizers", "rootbench.tasks")


def loaded() -> bool:
    """Whether this process has imported the registries (then reading them here is free and exact)."""
    return "rootbench.optimizers" in sys.modules and "rootbench.tasks" in sys.modules


def snapshot() -> dict:
    """Every registered optimizer and task with its declared fields (imports the registries)."""
    out = {"optimizers": {}, "tasks": {}, "errors": []}
    try:
        from rootbench.optimizers import get_optimizer_spec, list_optimizers

        for name in list_optimizers():
            try:
                spec = get_optimizer_spec(name)
            except Exception:  # noqa: BLE001 - a broken entry is left out, not fatal
                continue
            out["optimizers"][name] = {f: _plain(getattr(spec, f, None)) for f in OPTIMIZER_FIELDS}
    except Exception as e:  # noqa: BLE001 - a broken optimizer file must not break the site
        out["errors"].append(f"optimizer registry unavailable ({type(e).__name__}: {e})")
    try:
        from rootbench.tasks import get_task_spec, list_tasks

        for name in list_tasks():
            try:
                spec = get_task_spec(name)
            except Exception:  # noqa: BLE001
                continue
            out["tasks"][name] = {f: _plain(getattr(spec, f, None)) for f in TASK_FIELDS}
    except Exception as e:  # noqa: BLE001
        out["errors"].append(f"task registry unavailable ({type(e).__name__}: {e})")
    return out


def _plain(v):
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


def optimizer_info(names, snap: dict) -> dict:
    """Declared metadata of every optimizer in the results or the registry; one no longer registered is listed
    with ``registered`` False and nothing declared."""
    registered = snap.get("optimizers", {})
    info = {}
    for name in sorted(set(names) | set(registered)):
        spec = registered.get(name)
        info[name] = {
            "registered": spec is not None,
            **{f: (spec or {}).get(f) for f in OPTIMIZER_FIELDS},
            "in_results": name in set(names),
        }
        for f in ("description", "paper", "family"):
            info[name][f] = info[name][f] or ""
    return info


def task_info(names, snap: dict) -> dict:
    """Declared metadata of the tasks in the results; ``model_kind`` is None for a task not registered here."""
    registered = snap.get("tasks", {})
    return {
        name: {
            "description": (registered.get(name) or {}).get("description") or "",
            "family": (registered.get(name) or {}).get("family") or "",
            "model_kind": (registered.get(name) or {}).get("model_kind"),
            "registered": name in registered,
        }
        for name in names
    }


def empty() -> dict:
    return {"optimizers": {}, "tasks": {}, "errors": []}


class Pending:
    """The declarations, being read beside the caller's work: in a thread when the registries are imported
    here, else in a child process. ``get()`` waits for them."""

    def __init__(self, reuse: dict | None = None):
        self._result, self._thread = reuse, None
        if reuse is not None:
            return
        if loaded():
            self._result = snapshot()
            return
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rootbench.leaderboard.declared"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self):
        out, err = self._proc.communicate()
        try:
            self._result = json.loads(out)
        except ValueError:
            last = (err.strip().splitlines() or ["no output"])[-1]
            self._result = {**empty(), "errors": [f"registries unavailable (the child process said: {last})"]}

    def get(self) -> dict:
        if self._thread is not None:
            self._thread.join()
        return self._result


def fingerprint() -> str:
    """A hash of everything the declarations are read from: the optimizer and task packages, the registry,
    plugin files named by ``ROOTBENCH_OPTIMIZERS`` and the installed entry points. Equal fingerprints, equal
    declarations (a rebuild reuses the previous build's answer and imports nothing)."""
    import importlib.util
    from importlib import metadata

    h = hashlib.sha256()
    for pkg in ("rootbench.optimizers", "rootbench.tasks", "rootbench.harness"):
        spec = importlib.util.find_spec(pkg)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for dirpath, dirnames, files in os.walk(folder):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                for f in sorted(files):
                    if f.endswith(".py"):
                        _stat_into(h, os.path.join(dirpath, f))
    plugins = os.environ.get(PLUGIN_ENV, "")
    h.update(plugins.encode())
    for item in plugins.replace(",", os.pathsep).split(os.pathsep):
        if item.strip() and os.path.exists(item.strip()):
            _stat_into(h, item.strip())
    try:
        eps = sorted(
            f"{e.group}:{e.name}={e.value}" for g in ENTRY_POINT_GROUPS for e in metadata.entry_points(group=g)
        )
    except Exception:  # noqa: BLE001
        eps = ["unknown"]
    h.update("\n".join(eps).encode())
    return h.hexdigest()[:20]


def _stat_into(h, path: str) -> None:
    """The file's name and content (not its mtime: a checkout or a touch changes no declaration)."""
    try:
        with open(path, "rb") as f:
            h.update(f"{path}\n".encode() + hashlib.sha256(f.read()).digest())
    except OSError:
        h.update(f"{path}:missing\n".encode())


def main() -> int:
    json.dump(snapshot(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

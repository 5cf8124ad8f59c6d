"""The worker process of one run: ``python -m rootbench.harness.worker FD``.

Started by ``execute.run_in_worker`` in its own process group (a terminal's Ctrl-C reaches only the
parent, which decides), it reads its request from stdin and writes one pickled message to file
descriptor ``FD``: ``("rows", rows)``, ``("usage", message)``, ``("exception", summary, traceback)`` or
``("interrupted",)``. Its first act, before any import, is to ask Linux to kill it when its parent dies
(``PR_SET_PDEATHSIG``), so a ``kill -9`` of ``rootbench`` never leaves a run training on alone.
"""

import os
import signal
import sys


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(fd: int) -> None:
    import pickle

    request = pickle.load(sys.stdin.buffer)
    _die_with_parent(request["parent_pid"])
    signal.signal(signal.SIGTERM, _interrupt)  # the parent stops a worker with SIGTERM
    signal.signal(signal.SIGINT, _interrupt)
    if request.get("memory_limit"):
        import resource

        try:
            resource.setrlimit(resource.RLIMIT_DATA, (request["memory_limit"], request["memory_limit"]))
        except (ValueError, OSError):
            pass
    try:
        import traceback

        from rootbench.harness.registry import UsageError

        try:
            from rootbench.harness.execute import progress_bar
            from rootbench.harness.resolve import resolve_run
            from rootbench.harness.runner import run

            spec = resolve_run(*request["request"])
            rows = run(spec, progress=progress_bar(spec) if request.get("show_progress") else None)
            msg = ("rows", rows)
        except UsageError as e:
            msg = ("usage", str(e))
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - report everything to the parent
            msg = ("exception", f"{type(e).__name__}: {e}", traceback.format_exc())
    except KeyboardInterrupt:  # stopped by the parent (or a signal): an interruption, not a result
        msg = ("interrupted",)
    try:
        with os.fdopen(fd, "wb") as out:
            pickle.dump(msg, out, protocol=pickle.HIGHEST_PROTOCOL)
    except (OSError, BrokenPipeError):  # the parent is gone: nobody to report to
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)  # skip interpreter teardown: nothing is left to flush, and library threads can hang it


if __name__ == "__main__":
    main(int(sys.argv[1]))

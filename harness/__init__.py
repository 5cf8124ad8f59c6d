"""rootbench's harness: the registry contract, run resolution, the runner, the results store and the CLI.

``rootbench.harness.run(task, optimizer, config) -> rows`` is the whole benchmark in one function call.
"""

__version__ = "0.2.0"


def run(task, optimizer, config=None, progress=None):
    """Resolve and train ``optimizer`` on ``task``; the tidy rows (nothing is written). See ``harness.runner``."""
    from rootbench.harness.resolve import resolve_run
    from rootbench.harness.runner import run as _run

    return _run(resolve_run(task, optimizer, config), progress=progress)

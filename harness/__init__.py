"""rootbench's harness: registries, the runner, the results store and the CLI.

``harness.run(task, optimizer, config) -> rows`` is the whole benchmark in one function call.
"""
__version__ = "0.1.0"


def run(task, optimizer, config=None, progress=None):
    """Train ``optimizer`` on ``task``; see ``harness.runner.run``."""
    from rootbench.harness.config import RunConfig
    from rootbench.harness.runner import run as _run

    return _run(task, optimizer, config or RunConfig(), progress=progress)

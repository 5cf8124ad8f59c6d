import os
import sys

from rootbench.harness.cli import console_main

code = console_main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # under torchrun: skip interpreter teardown, where gloo's threads can abort the process
    # ("terminate called without an active exception") after the run is complete and written
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
sys.exit(code)

"""`python tests/fault/run_cli.py ARGS`: the supervisor's command line with the termination log redirected to
$FAULT_TERMINATION_LOG, so a test can read what Kubernetes would show without touching /dev/termination-log."""

import os
import sys

from supervisor import cli

if __name__ == "__main__":
    cli.TERMINATION_LOG = os.environ["FAULT_TERMINATION_LOG"]
    sys.exit(cli.main())

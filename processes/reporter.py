"""Reporter stage: `python -m processes.reporter --config PATH [--debug] [--once]`.

The stage itself is lagmon.stages.reporter; this is only its entry point."""

import sys

from lagmon.stages.reporter import main

if __name__ == "__main__":
    sys.exit(main())

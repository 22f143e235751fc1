"""Housekeeper stage: `python -m processes.housekeeper --config PATH [--debug] [--once]`.

The stage itself is lagmon.stages.housekeeper; this is only its entry point."""

import sys

from lagmon.stages.housekeeper import main

if __name__ == "__main__":
    sys.exit(main())

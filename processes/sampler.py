"""Sampler stage: `python -m processes.sampler --config PATH [--debug] [--once]`.

The stage itself is lagmon.stages.sampler; this is only its entry point."""

import sys

from lagmon.stages.sampler import main

if __name__ == "__main__":
    sys.exit(main())

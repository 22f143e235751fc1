"""Housekeeper stage: `python -m processes.housekeeper --config PATH [--debug] [--once]`."""

import sys

from lagmon import runtime
from lagmon.stages import Housekeeper


def make_step(cfg, store, log):
    return Housekeeper(cfg, store, log).step, cfg.monitoring.housekeeping_interval_seconds


def main(argv=None) -> int:
    return runtime.stage_main("housekeeper", make_step, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Reporter stage: `python -m processes.reporter --config PATH [--debug] [--once]`."""

import sys

from lagmon import runtime
from lagmon.stages import Reporter


def make_step(cfg, store, log):
    return Reporter(cfg, store, log).step, cfg.monitoring.report_interval_seconds


def main(argv=None) -> int:
    return runtime.stage_main("reporter", make_step, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Sampler stage: `python -m processes.sampler --config PATH [--debug] [--once]`."""

import sys

from lagmon import runtime
from lagmon.kafka import IsolatedKafkaClient
from lagmon.sampling import Sampler


def make_step(cfg, store, log):
    sampler = Sampler(cfg, store, IsolatedKafkaClient(cfg.kafka, logger=log), log)
    return sampler.step, cfg.monitoring.sample_interval_seconds


def main(argv=None) -> int:
    return runtime.stage_main("sampler", make_step, argv)


if __name__ == "__main__":
    sys.exit(main())

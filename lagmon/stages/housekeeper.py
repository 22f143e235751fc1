"""The housekeeper stage: thins history, purges absent groups, vacuums and checkpoints.

`python -m processes.housekeeper --config PATH [--debug] [--once]` (or `lagmon-housekeeper`) runs
main(). The process around the step is lagmon.stages.runtime.
"""

from __future__ import annotations

import logging

from lagmon import thinning
from lagmon.stages.runtime import stage_main


class Housekeeper:
    """Thins history, purges absent groups, vacuums and checkpoints."""

    def __init__(self, cfg, store, log: logging.Logger | None = None):
        self.cfg = cfg
        self.store = store
        self.log = log or logging.getLogger("lagmon.housekeeper")

    def step(self, now: float) -> float:
        mon = self.cfg.monitoring
        heads = self.store.thin_heads(mon.max_entries_per_partition, thinning.keep_indexes)
        commits = self.store.thin_commits(mon.max_commit_entries_per_partition, thinning.keep_indexes)
        anchors = self.store.prune_anchors()
        purged = self.store.purge_absent_groups(now - mon.absent_group_retention_seconds)
        # Transitions are kept as long as an absent group is: the retention window.
        self.store.prune_transitions(now - mon.absent_group_retention_seconds)
        if purged:
            self.log.info(
                "purged %d group/topics absent for over %ss", purged, mon.absent_group_retention_seconds
            )
        info = self.store.maintenance()
        self.log.info(
            "thinned %d head rows, %d commit rows, %d anchors; db %d bytes, wal %d bytes",
            heads,
            commits,
            anchors,
            info.get("db_bytes", 0),
            info.get("wal_bytes", 0),
        )
        return mon.housekeeping_interval_seconds


def make_step(cfg, store, log):
    return Housekeeper(cfg, store, log).step, cfg.monitoring.housekeeping_interval_seconds


def main(argv: list[str] | None = None) -> int:
    return stage_main("housekeeper", make_step, argv)

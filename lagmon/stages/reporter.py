"""The reporter stage: every group/topic's lag from the database into lag.json.

`python -m processes.reporter --config PATH [--debug] [--once]` (or `lagmon-reporter`) runs main().
The step takes `now` and returns the seconds until it is due again; the process around it
(signals, schedule, heartbeats) is lagmon.stages.runtime.
"""

from __future__ import annotations

import logging
import time

from lagmon import report, states, timelag
from lagmon.stages.listing import is_excluded
from lagmon.stages.runtime import stage_main


class Reporter:
    """Computes every group/topic's lag from the database and rewrites lag.json."""

    def __init__(self, cfg, store, log: logging.Logger | None = None):
        self.cfg = cfg
        self.store = store
        self.log = log or logging.getLogger("lagmon.reporter")
        self.stale = False  # logged once per stale period, not at every report

    def rows(self, now: float) -> list[report.ConsumerRow]:
        """One row per group/topic the sampler has a status for. Its lag comes from the summary
        the sampler stored with the status (no per-partition reads); a status without one (a
        database from an older lagmon, not resampled yet) is computed from the history. A pair
        the config excludes is left out at once, whether or not the sampler has dropped it yet."""
        exclude = self.cfg.exclude
        statuses = {
            k: s for k, s in self.store.group_statuses().items() if not is_excluded(k[0], k[1], exclude)
        }
        lags = {
            k: timelag.group_lag_at(s.lag_summary, now)
            for k, s in statuses.items()
            if s.lag_summary is not None
        }
        # Commits with no status yet (the sampler stopped between its two writes) are reported too.
        keys = statuses.keys() | {k for k in self.store.commit_keys() if not is_excluded(k[0], k[1], exclude)}
        missing = [k for k in keys if k not in lags]
        if missing:
            lags.update(timelag.group_lags(self.store.lag_inputs(missing), now, missing))
        rows = []
        for (group, topic), lag in lags.items():
            status = statuses.get((group, topic))
            state = states.State(status.state) if status is not None else states.State.ONLINE
            rows.append(
                report.ConsumerRow(
                    group_id=group,
                    topic=topic,
                    lag_seconds=lag.seconds,
                    worst_partition=lag.worst_partition,
                    status=state.value,
                    data_resolution=states.resolution(state),
                    partitions_monitored=lag.partitions,
                    calculated_at=lag.calculated_at,
                    lag_lower_bound=lag.lower_bound,
                )
            )
        return rows

    def step(self, now: float) -> float:
        rows = self.rows(now)
        monitor = report.build_monitor(
            self.store.stage_states(), now=now, sample_interval=self.cfg.monitoring.sample_interval_seconds
        )
        started = time.perf_counter()
        report.write_report(
            self.cfg.output.json_path, report.build_report(rows, generated_at=now, monitor=monitor)
        )
        self.log.debug(
            "wrote %d consumers to %s in %.3fs",
            len(rows),
            self.cfg.output.json_path,
            time.perf_counter() - started,
        )
        stale = bool(monitor.get("stale"))
        if stale and not self.stale:
            self.log.warning(
                "report is stale: %s", monitor.get("stale_reason", "sampler not completing samples")
            )
        elif self.stale and not stale:
            self.log.info("report is fresh again: the sampler is completing samples")
        self.stale = stale
        return self.cfg.monitoring.report_interval_seconds


def make_step(cfg, store, log):
    return Reporter(cfg, store, log).step, cfg.monitoring.report_interval_seconds


def main(argv: list[str] | None = None) -> int:
    return stage_main("reporter", make_step, argv)

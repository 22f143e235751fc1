"""The reporter stage: every group/topic's lag from the database into lag.json.

`python -m processes.reporter --config PATH [--debug] [--once]` (or `lagmon-reporter`) runs main().
The step takes `now` and returns the seconds until it is due again; the process around it
(signals, schedule, heartbeats) is lagmon.stages.runtime.

The report follows the sample: every POLL_SECONDS the step reads one cheap marker from the
database (the sampler's last successful step in stage_state) and rewrites lag.json as soon
as it moved, so lag.json is at most about POLL_SECONDS plus one write behind a sample. It
is rewritten at least every report_interval_seconds anyway (monitor.stale keeps moving when
no sample lands), and, while some lag grows with time (a stopped group's lag is computed at
the report), at the instant a growing lag's whole seconds change: when its exact lag reaches
k + 0.5, so the lag_seconds a reader finds is the truth rounded, at whatever moment it reads
(at least every GROWING_REFRESH seconds; never more often than GROWING_MIN seconds, nor
than GROWING_COST times the last write took). Those due times are kept on the monotonic
clock, so a step of the wall clock neither stops nor floods the reports. The stages still
talk only through the database.
"""

from __future__ import annotations

import logging
import math
import time

from lagmon import report, states, timelag
from lagmon.stages.figures_io import ReporterFigures
from lagmon.stages.listing import is_excluded
from lagmon.stages.runtime import stage_main

# How often the step looks for a new sample (one single-row read when nothing landed).
POLL_SECONDS = 0.25
# While some reported lag grows with time, lag.json is rewritten when its whole seconds
# change, at least every GROWING_REFRESH s and at most every GROWING_MIN s (or GROWING_COST
# times the last write's duration, for a report of very many pairs).
GROWING_REFRESH = 1.0
GROWING_MIN = 0.1
GROWING_COST = 4.0


class Reporter:
    """Computes every group/topic's lag from the database and rewrites lag.json."""

    def __init__(self, cfg, store, log: logging.Logger | None = None, *, clock=time.monotonic):
        self.cfg = cfg
        self.store = store
        self.log = log or logging.getLogger("lagmon.reporter")
        self.stale = False  # logged once per stale period, not at every report
        self.write_failing_since: float | None = None  # when lag.json last became unwritable
        self.figures = ReporterFigures(cfg, store, self.log)
        self._clock = clock
        self._marker: tuple | None = None  # the sampler's marker at the last report
        self._due: float | None = None  # monotonic time the next report is due regardless
        self._written: float | None = None  # monotonic time of the last report
        self._growing_after: float | None = None  # seconds after the last report one is due (a lag grows)

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
                    lag_seconds_exact=lag.exact,
                )
            )
        return rows

    def _sample_marker(self) -> tuple | None:
        """What changes whenever the sampler completes (or fails) a step."""
        sampler = self.store.stage_states().get("sampler")
        if sampler is None:
            return None
        return (sampler.pid, sampler.started_at, sampler.last_success, sampler.last_error_at)

    def step(self, now: float) -> float:
        """Rewrite lag.json when a sample landed since the last report or the report interval
        passed; returns the seconds until the next look (at most POLL_SECONDS)."""
        interval = float(self.cfg.monitoring.report_interval_seconds)
        marker = self._sample_marker()
        mono = self._clock()
        if self._due is None or marker != self._marker or mono >= min(self._due, self._growing_due(interval)):
            self._marker = marker
            self.write(now)
            self._written = mono
            mono = self._clock()
            self._due = mono + interval
        return max(0.0, min(POLL_SECONDS, interval, self._due - mono, self._growing_due(interval) - mono))

    def _growing_due(self, interval: float) -> float:
        """The monotonic time a report is due because a lag grows (inf when none grows)."""
        if self._growing_after is None or self._written is None:
            return math.inf
        return self._written + min(self._growing_after, interval)

    def write(self, now: float) -> float:
        """Compute every row at ``now`` and rewrite lag.json (one report)."""
        began = time.perf_counter()
        rows = self.figures.rows(self.rows(now), now)
        self._growing_after = self._next_change(rows, now)
        monitor = report.build_monitor(
            self.store.stage_states(),
            now=now,
            sample_interval=self.cfg.monitoring.sample_interval_seconds,
            request_timeout=self.cfg.kafka.request_timeout_seconds,
            stage_figures=self.store.stage_figures(),
        )
        started = time.perf_counter()
        doc = report.build_report(rows, generated_at=now, monitor=monitor)
        self.figures.write_prometheus(doc, now)  # its own failures never stop lag.json
        try:
            report.write_report(self.cfg.output.json_path, doc)
        except report.ReportWriteError:
            # Raised on: the runtime logs it once per outage (its text and kind are the same at
            # every attempt), records it as the reporter's last_error (lagmon status shows it,
            # lag.json cannot) and retries with backoff up to the report interval.
            if self.write_failing_since is None:
                self.write_failing_since = now
            raise
        if self.write_failing_since is not None:
            self.log.info(
                "wrote %s again, after %.0f s in which it could not be written",
                self.cfg.output.json_path,
                now - self.write_failing_since,
            )
            self.write_failing_since = None
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
        if self._growing_after is not None:
            self._growing_after = max(self._growing_after, GROWING_COST * (time.perf_counter() - began))
        return self.cfg.monitoring.report_interval_seconds

    @staticmethod
    def _next_change(rows: list[report.ConsumerRow], now: float) -> float | None:
        """Seconds until the first lag that grows with time (computed at the report, not held
        at a sample) changes its whole seconds; None when no lag grows."""
        flips = [
            r.lag_seconds + 0.5 - (r.lag_seconds if r.lag_seconds_exact is None else r.lag_seconds_exact)
            for r in rows
            if r.calculated_at >= now and (r.lag_seconds > 0 or (r.lag_seconds_exact or 0.0) > 0.0)
        ]
        if not flips:
            return None
        return min(GROWING_REFRESH, max(GROWING_MIN, min(flips)))


def make_step(cfg, store, log):
    return Reporter(cfg, store, log).step, cfg.monitoring.report_interval_seconds


def main(argv: list[str] | None = None) -> int:
    return stage_main("reporter", make_step, argv)

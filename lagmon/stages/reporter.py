"""The reporter stage: every group/topic's lag from the database into lag.json.

`python -m processes.reporter --config PATH [--debug] [--once]` (or `lagmon-reporter`) runs main().
The step takes `now` and returns the seconds until it is due again; the process around it
(signals, schedule, heartbeats) is lagmon.stages.runtime.

The report follows the sample: every POLL_SECONDS the step reads one cheap marker from the
database (the sampler's last successful step in stage_state) and rewrites lag.json as soon
as it moved, so lag.json is at most about POLL_SECONDS plus one write behind a sample. It
is rewritten at least every report_interval_seconds anyway (monitor.stale keeps moving when
no sample lands), and every GROWING_REFRESH seconds while some lag grows with time (a
stopped group's lag is computed at the report, so its whole-second value changes each
second: a reader gets it within about a second, whatever the sampling interval). That due time is kept on the monotonic clock, so a step
of the wall clock neither stops nor floods the reports. The stages still talk only through
the database.
"""

from __future__ import annotations

import logging
import time

from lagmon import report, states, timelag
from lagmon.stages.figures_io import ReporterFigures
from lagmon.stages.listing import is_excluded
from lagmon.stages.runtime import stage_main

# How often the step looks for a new sample (one single-row read when nothing landed).
POLL_SECONDS = 0.25
# How often lag.json is rewritten while some reported lag grows with time.
GROWING_REFRESH = 1.0


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
        self._growing = False  # the last report had a lag that grows with time

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
        refresh = min(GROWING_REFRESH, interval)
        growing_due = self._growing and self._written is not None and mono >= self._written + refresh
        if self._due is None or marker != self._marker or mono >= self._due or growing_due:
            self._marker = marker
            self.write(now)
            self._written = mono
            mono = self._clock()
            self._due = mono + interval
        return max(0.0, min(POLL_SECONDS, interval, self._due - mono))

    def write(self, now: float) -> float:
        """Compute every row at ``now`` and rewrite lag.json (one report)."""
        rows = self.figures.rows(self.rows(now), now)
        # A lag computed at the report (not held at a sample) grows with time.
        self._growing = any(r.lag_seconds > 0 and r.calculated_at >= now for r in rows)
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
        return self.cfg.monitoring.report_interval_seconds


def make_step(cfg, store, log):
    return Reporter(cfg, store, log).step, cfg.monitoring.report_interval_seconds


def main(argv: list[str] | None = None) -> int:
    return stage_main("reporter", make_step, argv)

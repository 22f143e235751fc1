"""The stages' side of lagmon.figures and of the Prometheus file: what the sampler stores
after each sample, and what the reporter adds to each report and writes beside lag.json.

Sampler: ``record_sample`` (the figures of the sampled group/topics) and ``Instrumented``
(wraps the step: the last sample duration and the error count since the process started,
in the store's stage_figures). Reporter: ``ReporterFigures`` (lag.json's additive fields,
the monitor's ``prometheus_error``, and the .prom file at output.prometheus_path).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lagmon import figures, prometheus, report
from lagmon.stages.runtime import printable
from lagmon.timelag import LagInput, LagSummary, Term

# Trend points older than this many offline sample intervals are dropped (a long outage
# starts a new trend); the trend itself is the last figures.TREND_POINTS samples.
TREND_MAX_AGE_INTERVALS = 10


def record_sample(
    store: Any,
    inputs: Iterable[LagInput],
    summaries: Mapping[tuple[str, str], LagSummary],
    log_starts: Mapping[tuple[str, int], int],
    now: float,
    monitoring: Any,
    terms: Iterable[Term | None] | None = None,
) -> None:
    """Compute and store the figures of the group/topics sampled at ``now``."""
    if not summaries:
        return
    inputs = list(inputs)
    # The previous figures' trends; their partitions' log starts only where this sample's heads
    # fetch has none (a partition whose head was not read).
    previous = store.group_trends(summaries.keys())
    unread = {(i.group_id, i.topic) for i in inputs if (i.topic, i.partition) not in log_starts}
    if unread:
        previous.update(store.group_figures(unread & previous.keys()))
    max_age = TREND_MAX_AGE_INTERVALS * float(monitoring.offline_sample_interval_seconds)
    store.save_group_figures(figures.compute(inputs, summaries, log_starts, previous, now, max_age, terms))


class Instrumented:
    """The sampler's step, timing each successful sample and counting failed ones into the
    store (stage_figures: last_sample_duration_seconds, errors_total). The count starts at 0
    with the process, as a Prometheus counter does; recording never fails the step."""

    def __init__(
        self,
        step: Callable[[float], Any],
        store: Any,
        log: logging.Logger,
        stage: str = "sampler",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.step, self.store, self.log, self.stage, self.clock = step, store, log, stage, clock
        self.errors = 0
        self.duration: float | None = None
        self._failing: str | None = None

    def __call__(self, now: float) -> Any:
        started = self.clock()
        try:
            delay = self.step(now)
        except Exception:
            self.errors += 1
            self._save()
            raise
        self.duration = self.clock() - started
        self._save()
        return delay

    def _save(self) -> None:
        try:
            self.store.set_stage_figures(
                self.stage, {"last_sample_duration_seconds": self.duration, "errors_total": self.errors}
            )
        except Exception as exc:
            if str(exc) != self._failing:
                self.log.warning("could not record the %s's figures: %s", self.stage, exc)
            self._failing = str(exc)
        else:
            self._failing = None


class ReporterFigures:
    """The reporter's additions: figures on the rows, and the Prometheus file."""

    def __init__(self, cfg: Any, store: Any, log: logging.Logger):
        self.store, self.log = store, log
        self.path: str | None = getattr(cfg.output, "prometheus_path", None)
        self.partitions = bool(getattr(cfg.output, "prometheus_partitions", False))
        self.failing: str | None = None  # the current write failure (logged once per episode)
        self._figures: dict[tuple[str, str], figures.GroupFigures] = {}

    def rows(self, rows: Iterable[report.ConsumerRow], now: float) -> list[report.ConsumerRow]:
        """The rows with offset_lag, worst_partition_offset_lag, catch_up_seconds and
        messages_lost from the stored figures (None where the sampler has none yet)."""
        self._figures = self.store.group_figures()
        out = []
        for row in rows:
            f = self._figures.get((row.group_id, row.topic))
            if f is None:
                out.append(row)
                continue
            out.append(
                dataclasses.replace(
                    row,
                    offset_lag=f.offset_lag,
                    worst_partition_offset_lag=figures.worst_partition_offset_lag(
                        f, row.worst_partition if row.lag_seconds > 0 else None
                    ),
                    catch_up_seconds=figures.catch_up_seconds(f.catch_up_at, row.lag_seconds, now),
                    messages_lost=f.messages_lost,
                )
            )
        return out

    def partition_series(self, doc: Mapping[str, Any], now: float) -> list[dict]:
        keys = {(c["group_id"], c["topic"]) for c in doc.get("consumers", [])}
        return [
            {
                "group_id": g,
                "topic": t,
                "partition": p.partition,
                "lag_seconds": report.coerce_lag(p.lag_at(now)),
                "offset_lag": p.offset_lag,
            }
            for (g, t), f in sorted(self._figures.items())
            if (g, t) in keys
            for p in f.partitions
        ]

    def write_prometheus(self, doc: dict, now: float) -> None:
        """Write the .prom file (if configured) from the report ``doc``; a failure is logged
        once per episode and shown as doc["monitor"]["prometheus_error"] (null when fine),
        never raised: lag.json is written whatever happens here."""
        if not self.path:
            return
        monitor = doc.setdefault("monitor", {})
        monitor["prometheus_error"] = None
        try:
            partitions = self.partition_series(doc, now) if self.partitions else None
            prometheus.write(self.path, doc, partitions=partitions)
        except Exception as exc:  # disk full, permissions, a bug: lag.json still goes out
            text = f"could not write {self.path}: {type(exc).__name__}: {exc}"
            monitor["prometheus_error"] = text
            episode = f"{type(exc).__name__} {getattr(exc, 'errno', None)}"  # not the temp file's name
            if episode != self.failing:
                self.log.error("%s (lag.json is still written)", printable(text))
            self.failing = episode
            return
        if self.failing is not None:
            self.log.info("wrote %s again", printable(self.path))
        self.failing = None

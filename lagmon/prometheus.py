"""The lag report as a Prometheus text-format file (exposition format 0.0.4), for
node_exporter's textfile collector.

``render(report, partitions=None)`` is pure: it reads the lag.json report dict
(``lagmon.report.build_report`` plus the monitor section) and returns the file's
bytes.  ``write(path, report, partitions=None)`` renders and replaces ``path``
atomically with ``lagmon.report.write_atomic`` (temp file, fsync, rename), so
the collector never reads half a file.

Fields read, per ``report["consumers"]`` entry (group_id and topic are the
labels ``group_id`` and ``topic``):
    lag_seconds, lag_lower_bound, status, data_resolution, partitions_monitored,
    calculated_at (ISO), and, when present (newer reports; a missing or null
    value omits the series): offset_lag, worst_partition_offset_lag,
    catch_up_seconds, messages_lost.
From the report: generated_at (ISO).  From ``report["monitor"]`` (optional):
    stale, starting (optional), stages.<stage>.{last_success, last_error,
    last_error_at, started_at, heartbeat_at, interval (optional)}, and the
    optional sampler figures monitor.sampler.last_sample_duration_seconds and
    monitor.sampler.errors_total.
``partitions`` (only when per-partition series are wanted): a list of
    {group_id, topic, partition, lag_seconds, offset_lag}.

Rules: every family has HELP and TYPE and is written only when it has at least
one sample; base units (seconds, Unix timestamps in seconds); ``_total`` only
for the one counter; state as an enum label with one 0/1 series per value; no
sample timestamps (the textfile collector refuses them); label values escaped
as the format requires (backslash, double quote, newline), any other Unicode
kept as UTF-8; families in a fixed order and series sorted, so the same report
always gives the same bytes.  A duplicate group/topic keeps its first entry
(a duplicate series would make the collector drop the whole file).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from lagmon.report import RESOLUTIONS, STATUSES, write_atomic

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float | int]

# name -> (type, help); the order here is the order in the file.
FAMILIES: dict[str, tuple[str, str]] = {
    "lagmon_consumer_lag_seconds": (
        "gauge",
        "Consumer group time lag on the topic in seconds (lag.json lag_seconds).",
    ),
    "lagmon_consumer_lag_exact_seconds": (
        "gauge",
        "The same lag before rounding to whole seconds, to the millisecond (lag.json lag_seconds_exact).",
    ),
    "lagmon_consumer_lag_lower_bound": (
        "gauge",
        "1 when lag_seconds is a lower bound (the true lag is at least this), else 0.",
    ),
    "lagmon_consumer_status": ("gauge", "Consumer group state: 1 for the current status, 0 for the others."),
    "lagmon_consumer_data_resolution": (
        "gauge",
        "Resolution of the data behind the lag: 1 for the current one (fine or coarse), 0 for the other.",
    ),
    "lagmon_consumer_partitions": ("gauge", "Number of partitions of the topic monitored for the group."),
    "lagmon_consumer_offset_lag": ("gauge", "Offset lag in messages, summed over the topic's partitions."),
    "lagmon_consumer_worst_partition_offset_lag": (
        "gauge",
        "Offset lag in messages of the partition with the largest time lag.",
    ),
    "lagmon_consumer_catch_up_seconds": (
        "gauge",
        "Estimated seconds until the time lag reaches zero at the current trend (absent when not shrinking).",
    ),
    "lagmon_consumer_messages_lost": (
        "gauge",
        "Messages below the partitions' log start offsets that the group will never read (0 normally).",
    ),
    "lagmon_consumer_calculated_timestamp_seconds": (
        "gauge",
        "Unix time in seconds at which the group's lag was calculated.",
    ),
    "lagmon_partition_lag_seconds": ("gauge", "Time lag of the group on one partition in seconds."),
    "lagmon_partition_offset_lag": ("gauge", "Offset lag of the group on one partition in messages."),
    "lagmon_report_generated_timestamp_seconds": (
        "gauge",
        "Unix time in seconds at which the report was generated.",
    ),
    "lagmon_report_consumers": ("gauge", "Number of group/topic pairs in the report."),
    "lagmon_stale": (
        "gauge",
        "1 when the sampler has not completed a sample recently (the report is stale), else 0.",
    ),
    "lagmon_starting": ("gauge", "1 while lagmon is starting and has no complete picture yet, else 0."),
    "lagmon_stage_last_success_timestamp_seconds": (
        "gauge",
        "Unix time in seconds of the stage's last successful step.",
    ),
    "lagmon_stage_last_error_timestamp_seconds": ("gauge", "Unix time in seconds of the stage's last error."),
    "lagmon_stage_started_timestamp_seconds": (
        "gauge",
        "Unix time in seconds at which the stage process started.",
    ),
    "lagmon_stage_heartbeat_timestamp_seconds": (
        "gauge",
        "Unix time in seconds of the stage's last heartbeat.",
    ),
    "lagmon_stage_interval_seconds": ("gauge", "The stage's configured step interval in seconds."),
    "lagmon_stage_failing": (
        "gauge",
        "1 when the stage's latest outcome is an error (no success since), else 0.",
    ),
    "lagmon_sampler_last_sample_duration_seconds": (
        "gauge",
        "Duration of the sampler's last sample in seconds.",
    ),
    "lagmon_sampler_errors_total": ("counter", "Failed sampler steps since the sampler started."),
}

# consumer field -> family, for the plain numeric per-consumer series (absent or null: no series)
_CONSUMER_NUMBERS = (
    ("lag_seconds", "lagmon_consumer_lag_seconds"),
    ("lag_seconds_exact", "lagmon_consumer_lag_exact_seconds"),
    ("partitions_monitored", "lagmon_consumer_partitions"),
    ("offset_lag", "lagmon_consumer_offset_lag"),
    ("worst_partition_offset_lag", "lagmon_consumer_worst_partition_offset_lag"),
    ("catch_up_seconds", "lagmon_consumer_catch_up_seconds"),
    ("messages_lost", "lagmon_consumer_messages_lost"),
)
_STAGE_TIMES = (
    ("last_success", "lagmon_stage_last_success_timestamp_seconds"),
    ("last_error_at", "lagmon_stage_last_error_timestamp_seconds"),
    ("started_at", "lagmon_stage_started_timestamp_seconds"),
    ("heartbeat_at", "lagmon_stage_heartbeat_timestamp_seconds"),
)


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int) -> str:
    """A sample value: integers exactly, floats by repr, NaN and +-Inf as the format spells them."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def timestamp(value: Any) -> float | None:
    """ISO-8601 text ("2026-02-18T12:00:00Z") -> Unix seconds; None for null or unparsable text."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # lagmon writes UTC with a Z; a naive time is not ours to guess
    return parsed.timestamp()


def _number(value: Any) -> float | int | None:
    """A usable sample value, or None (omit the series) for null, text and other non-numbers."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class _Series:
    def __init__(self) -> None:
        self.samples: dict[str, dict[Labels, float | int]] = {name: {} for name in FAMILIES}

    def add(self, family: str, labels: Labels, value: Any) -> None:
        number = _number(value)
        if number is not None:
            self.samples[family].setdefault(labels, number)

    def render(self) -> bytes:
        lines: list[str] = []
        for family, (kind, help_text) in FAMILIES.items():
            samples = self.samples[family]
            if not samples:
                continue
            lines.append(f"# HELP {family} {escape_help(help_text)}")
            lines.append(f"# TYPE {family} {kind}")
            for labels in sorted(samples, key=_sort_key):
                lines.append(f"{family}{_label_text(labels)} {format_value(samples[labels])}")
        text = "\n".join(lines) + "\n" if lines else ""
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (undecodable bytes in a name) becomes U+FFFD
            return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def _sort_key(labels: Labels) -> tuple:
    """Label values in order, partition numbers numerically (2 before 10)."""
    return tuple(
        (name, (0, int(value), "") if name == "partition" and value.isdigit() else (1, 0, value))
        for name, value in labels
    )


def _label_text(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels) + "}"


def _consumers(series: _Series, consumers: Iterable[Any]) -> int:
    seen: set[tuple[str, str]] = set()
    for entry in consumers:
        if not isinstance(entry, Mapping):
            continue
        key = (_text(entry.get("group_id")), _text(entry.get("topic")))
        if key in seen:
            continue
        seen.add(key)
        labels: Labels = (("group_id", key[0]), ("topic", key[1]))
        for field, family in _CONSUMER_NUMBERS:
            series.add(family, labels, entry.get(field))
        if "lag_lower_bound" in entry:
            series.add("lagmon_consumer_lag_lower_bound", labels, bool(entry.get("lag_lower_bound")))
        _enum(series, "lagmon_consumer_status", labels, "status", STATUSES, entry.get("status"))
        _enum(
            series,
            "lagmon_consumer_data_resolution",
            labels,
            "resolution",
            RESOLUTIONS,
            entry.get("data_resolution"),
        )
        series.add(
            "lagmon_consumer_calculated_timestamp_seconds", labels, timestamp(entry.get("calculated_at"))
        )
    return len(seen)


def _enum(
    series: _Series, family: str, labels: Labels, name: str, values: tuple[str, ...], current: Any
) -> None:
    if current is None:
        return
    current = _text(current).lower()
    for value in sorted({*values, current}):
        series.add(family, (*labels, (name, value)), value == current)


def _monitor(series: _Series, monitor: Mapping[str, Any]) -> None:
    if "stale" in monitor:
        series.add("lagmon_stale", (), bool(monitor.get("stale")))
    if "starting" in monitor:
        series.add("lagmon_starting", (), bool(monitor.get("starting")))
    stages = monitor.get("stages")
    for stage, state in sorted(stages.items()) if isinstance(stages, Mapping) else ():
        if not isinstance(state, Mapping):
            continue
        labels: Labels = (("stage", _text(stage)),)
        for field, family in _STAGE_TIMES:
            series.add(family, labels, timestamp(state.get(field)))
        series.add("lagmon_stage_interval_seconds", labels, state.get("interval"))
        series.add("lagmon_stage_failing", labels, stage_failing(state))
    sampler = monitor.get("sampler")
    if isinstance(sampler, Mapping):
        series.add(
            "lagmon_sampler_last_sample_duration_seconds", (), sampler.get("last_sample_duration_seconds")
        )
        series.add("lagmon_sampler_errors_total", (), sampler.get("errors_total"))


def stage_failing(state: Mapping[str, Any]) -> bool:
    """True when the stage's latest recorded outcome is an error: an error and no success since."""
    if not state.get("last_error"):
        return False
    error_at, success = timestamp(state.get("last_error_at")), timestamp(state.get("last_success"))
    if success is None:
        return True
    return error_at is not None and error_at >= success


def render(report: Mapping[str, Any], *, partitions: list[dict] | None = None) -> bytes:
    """The report (and, if given, the per-partition figures) in Prometheus text format 0.0.4."""
    series = _Series()
    consumers = report.get("consumers")
    count = _consumers(series, consumers if isinstance(consumers, list) else ())
    for entry in partitions or ():
        partition = entry.get("partition")
        if partition is None:
            continue
        labels: Labels = (
            ("group_id", _text(entry.get("group_id"))),
            ("topic", _text(entry.get("topic"))),
            ("partition", _text(partition)),
        )
        series.add("lagmon_partition_lag_seconds", labels, entry.get("lag_seconds"))
        series.add("lagmon_partition_offset_lag", labels, entry.get("offset_lag"))
    series.add("lagmon_report_generated_timestamp_seconds", (), timestamp(report.get("generated_at")))
    series.add("lagmon_report_consumers", (), count)
    monitor = report.get("monitor")
    if isinstance(monitor, Mapping):
        _monitor(series, monitor)
    return series.render()


def write(path: str, report: Mapping[str, Any], *, partitions: list[dict] | None = None) -> None:
    """Render, then replace ``path`` atomically (nothing is written if rendering fails).

    node_exporter's textfile collector reads only files whose name ends in ``.prom``."""
    write_atomic(path, render(report, partitions=partitions))

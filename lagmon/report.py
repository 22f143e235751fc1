"""Build the JSON lag report (pure) and write it atomically.

The report format is the spec's "Output Format":

    {"generated_at": "2026-02-18T12:00:00Z",
     "consumers": [{"group_id", "topic", "lag_seconds", "lag_display",
                    "worst_partition", "status", "data_resolution",
                    "partitions_monitored", "calculated_at",
                    "lag_lower_bound",
                    # additive: "lag_seconds_exact" (from the reporter), and once
                    # the sampler has stored them (lagmon.figures):
                    "offset_lag", "worst_partition_offset_lag",
                    "catch_up_seconds", "messages_lost"}, ...],
     "monitor": {...}}            # only when the caller passes one

Guarantees: ``lag_seconds`` is always a non-negative int (None, NaN and
negative values become 0, infinities and absurd values are capped at
MAX_LAG_SECONDS); ``lag_seconds_exact`` is the same lag before rounding, to
the millisecond, and rounds (half up) to ``lag_seconds``; ``worst_partition``
is null when the lag is 0; times are ISO-8601 UTC with second precision and a
``Z``; consumers are ordered by largest lag first, then group_id, then topic.

Nothing here reads the database or the clock: callers pass ``generated_at``
and ``now``.  ``write_atomic`` never lets a reader see a partial or empty
file: temp file in the same directory, fsync, chmod, os.replace, fsync of
the directory, temp file removed on any error.
"""

from __future__ import annotations

import errno
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from lagmon.timelag import MAX_SECONDS, round_seconds

# ~68 years: more than "now - 1970" for decades to come, and fits an int32
# for consumers that parse the JSON into 32-bit ints.
MAX_LAG_SECONDS = MAX_SECONDS

STATUSES = ("online", "offline", "recovering")
RESOLUTIONS = ("fine", "coarse")

# Staleness rule of the monitor section: the sampler must have completed a
# sample within this many sample intervals.
STALE_AFTER_INTERVALS = 3

_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"))


def lag_display(seconds: int) -> str:
    """Human-readable lag, floored to the largest whole unit.

    < 60 -> "< 1 minute"; then "1 minute"/"N minutes", "1 hour"/"N hours",
    "1 day"/"N days".  Negative input is treated like 0.
    """
    s = int(seconds)
    for size, unit in _UNITS:
        if s >= size:
            n = s // size
            return f"1 {unit}" if n == 1 else f"{n} {unit}s"
    return "< 1 minute"


def iso_utc(ts: float) -> str:
    """Epoch seconds -> "2026-02-18T12:00:00Z" (UTC, truncated to the second)."""
    if ts is None or not math.isfinite(ts):
        raise ValueError(f"iso_utc: timestamp must be a finite number (got {ts!r})")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(ts)))


def _iso_or_none(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return iso_utc(ts)
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def coerce_lag(value: Any) -> int:
    """Any lag value -> int in [0, MAX_LAG_SECONDS]; None/NaN/negative -> 0; rounded half up
    (timelag.round_seconds)."""
    if value is None:
        return 0
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        # e.g. an int too large for a float: certainly beyond the cap
        if isinstance(value, int) and value > 0:
            return MAX_LAG_SECONDS
        return 0
    return round_seconds(f)


@dataclass(frozen=True)
class ConsumerRow:
    group_id: str
    topic: str
    lag_seconds: int
    worst_partition: int | None
    status: str  # "online" | "offline" | "recovering"
    data_resolution: str  # "fine" | "coarse"
    partitions_monitored: int
    calculated_at: float
    lag_lower_bound: bool = False
    # Additive fields (lagmon.figures); None until the sampler has stored them.
    offset_lag: int | None = None
    worst_partition_offset_lag: int | None = None
    catch_up_seconds: float | None = None
    messages_lost: int | None = None
    # The lag before rounding (timelag.GroupLag.exact); None: lag_seconds itself.
    lag_seconds_exact: float | None = None


def _count(value: Any) -> int | None:
    """A message count for the report: a non-negative int, or None when unknown."""
    if value is None:
        return None
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return None


def exact_lag(lag: int, value: Any) -> float:
    """The unrounded lag, to the millisecond, kept within the half second that rounds to
    ``lag`` (so a reader's round() of it never disagrees with lag_seconds)."""
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return float(lag)
    if not math.isfinite(f):
        return float(lag)
    low, high = (0.0, 0.499) if lag == 0 else (lag - 0.5, lag + 0.499)
    return min(max(round(f, 3), low), high)


def _consumer(row: ConsumerRow, generated_at: float) -> dict:
    lag = coerce_lag(row.lag_seconds)
    status = str(row.status).lower()
    if status not in STATUSES:
        raise ValueError(
            f"report: status of {row.group_id}/{row.topic} must be one of "
            f"{', '.join(STATUSES)} (got {row.status!r})"
        )
    resolution = str(row.data_resolution).lower()
    if resolution not in RESOLUTIONS:
        raise ValueError(
            f"report: data_resolution of {row.group_id}/{row.topic} must be "
            f"fine or coarse (got {row.data_resolution!r})"
        )
    worst = row.worst_partition
    worst = int(worst) if (worst is not None and lag > 0) else None
    calculated = _iso_or_none(row.calculated_at) or iso_utc(generated_at)
    out = {
        "group_id": str(row.group_id),
        "topic": str(row.topic),
        "lag_seconds": lag,
        "lag_display": lag_display(lag),
        "worst_partition": worst,
        "status": status,
        "data_resolution": resolution,
        "partitions_monitored": int(row.partitions_monitored or 0),
        "calculated_at": calculated,
        "lag_lower_bound": bool(row.lag_lower_bound) and lag > 0,
    }
    if row.lag_seconds_exact is not None:  # additive: the reporter always gives it
        out["lag_seconds_exact"] = exact_lag(lag, row.lag_seconds_exact)
    if row.offset_lag is not None:  # the additive figures: all four, once the sampler has them
        out["offset_lag"] = _count(row.offset_lag)
        out["worst_partition_offset_lag"] = _count(row.worst_partition_offset_lag)
        out["catch_up_seconds"] = None if row.catch_up_seconds is None else coerce_lag(row.catch_up_seconds)
        out["messages_lost"] = _count(row.messages_lost)
    return out


def build_report(rows: Iterable[ConsumerRow], *, generated_at: float, monitor: dict | None = None) -> dict:
    """The report dict: generated_at, consumers (sorted), and monitor if given.

    A row whose calculated_at is missing or not finite gets generated_at.
    Raises ValueError for a status or data_resolution outside the spec's values.
    """
    consumers = [_consumer(r, generated_at) for r in rows]
    consumers.sort(key=lambda c: (-c["lag_seconds"], c["group_id"], c["topic"]))
    report: dict = {"generated_at": iso_utc(generated_at), "consumers": consumers}
    if monitor is not None:
        report["monitor"] = monitor
    return report


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def build_monitor(
    stages: Mapping[str, Any],
    *,
    now: float,
    sample_interval: float,
    request_timeout: float = 0.0,
    stage_figures: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict:
    """Self-health section from store.stage_states() (and store.stage_figures(): the
    sampler's as ``monitor.sampler`` = {last_sample_duration_seconds, errors_total}).

    stale is True when the sampler has not completed a sample within
    STALE_AFTER_INTERVALS * sample_interval seconds of ``now`` (no sampler row,
    or no success ever, is stale too); then "stale_reason" says why.

    starting is True (and stale False) while the sampler process has started
    (its started_at) but not completed a sample since, for up to
    STALE_AFTER_INTERVALS * sample_interval + request_timeout seconds after that
    start; then "starting_reason" says so. A restart does not page anyone; a
    sampler that has not sampled after that window is stale as before.
    """
    out_stages = {}
    for name in sorted(stages):
        st = stages[name]
        pid = _field(st, "pid")
        out_stages[name] = {
            "pid": int(pid) if pid is not None else None,
            "started_at": _iso_or_none(_field(st, "started_at")),
            "heartbeat_at": _iso_or_none(_field(st, "heartbeat_at")),
            "last_success": _iso_or_none(_field(st, "last_success")),
            "last_error": _field(st, "last_error"),
            "last_error_at": _iso_or_none(_field(st, "last_error_at")),
        }

    limit = STALE_AFTER_INTERVALS * sample_interval
    reason = starting = None
    sampler = stages.get("sampler")
    if sampler is None:
        reason = "the sampler has never run (no heartbeat recorded)"
    else:
        last_success = _field(sampler, "last_success")
        last_error = _field(sampler, "last_error")
        last_error_at = _field(sampler, "last_error_at")
        started_at = _field(sampler, "started_at")
        if last_success is not None and (last_error_at is None or last_error_at < last_success):
            last_error = None  # the store keeps the last error after a recovery: it is history
        if last_error_at is not None and started_at is not None and last_error_at < started_at:
            error_now = None  # an error of an earlier run of the sampler
        else:
            error_now = last_error
        window = limit + max(0.0, float(request_timeout))
        if (
            started_at is not None
            and (last_success is None or last_success < started_at)
            and 0 <= now - started_at <= window
        ):
            starting = (
                f"the sampler started {coerce_lag(now - started_at)} s ago and has not completed "
                f"its first sample yet (stale if none within {window:g} s of its start)"
            )
            if error_now:
                starting += f"; last error: {error_now}"
        elif last_success is None:
            reason = "the sampler has not completed a sample yet"
            if last_error:
                reason += f" (last error: {last_error})"
        elif now - last_success > limit:
            age = coerce_lag(now - last_success)
            reason = (
                f"the sampler's last completed sample was {lag_display(age)} ago "
                f"({age} s), more than {STALE_AFTER_INTERVALS} sample intervals "
                f"({limit:g} s)"
            )
            if last_error:
                reason += f"; last error: {last_error}"

    monitor: dict = {"stale": reason is not None, "starting": starting is not None}
    if reason is not None:
        monitor["stale_reason"] = reason
    if starting is not None:
        monitor["starting_reason"] = starting
    monitor["stages"] = out_stages
    sampler_figures = (stage_figures or {}).get("sampler")
    if sampler_figures:
        duration, errors = (sampler_figures.get(k) for k in ("last_sample_duration_seconds", "errors_total"))
        monitor["sampler"] = {
            "last_sample_duration_seconds": None if duration is None else round(float(duration), 6),
            "errors_total": None if errors is None else int(errors),
        }
    return monitor


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new
    content, never a partial or empty file.  The temp file lives in the same
    directory (same filesystem, so os.replace is atomic) and is removed on
    any error; the original file is then left untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def dumps_report(report: dict) -> bytes:
    """Serialize the report (indented, trailing newline)."""
    return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


class ReportWriteError(OSError):
    """The report file could not be written (a full disk, a directory it may not write): the
    old file is left as it was. Its text names the file and the cause, never the random temp
    file's name, so that one outage reads the same at every attempt; ``kind`` is the errno
    name (ENOSPC), which is what makes repeats of it one outage (stages.runtime)."""

    def __init__(self, path: str, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path = path
        self.kind = errno.errorcode.get(cause.errno or 0, type(cause).__name__)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror} ({self.kind})"


def write_report(path: str, report: dict) -> None:
    """Serialize with orjson, then write_atomic (nothing is written if
    serialization fails). Raises ReportWriteError when the file cannot be written."""
    data = dumps_report(report)
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise ReportWriteError(os.fspath(path), exc) from exc

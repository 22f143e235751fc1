"""The row types the Store reads and writes, and their conversion to and from SQL tuples.

HeadRow and LagInput are the time-lag math's own types (lagmon.timelag); the store builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import orjson

from lagmon.timelag import HeadRow, LagInput, LagSummary

__all__ = [
    "GroupStatus",
    "HeadRow",
    "LagInput",
    "StageState",
    "StoreError",
    "Transition",
    "columns",
    "group_status",
    "lag_input",
    "placeholders",
    "status_row",
    "values",
]


class StoreError(Exception):
    """The database cannot be used: the message names the path and the rule."""


@dataclass
class GroupStatus:
    group_id: str
    topic: str
    state: str
    since: float
    reason: str
    static_samples: int
    last_sampled: float | None
    next_sample: float | None
    last_present: float | None
    lag_seconds: float | None
    # What the lag at any later time depends on, computed by the sampler (timelag.summarize);
    # None until the sampler has sampled the group/topic with this schema.
    lag_summary: LagSummary | None = None


@dataclass(frozen=True)
class Transition:
    group_id: str
    topic: str
    at: float
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True)
class StageState:
    stage: str
    pid: int
    started_at: float
    heartbeat_at: float
    last_success: float | None
    last_error: str | None
    last_error_at: float | None
    interval: float


def columns(cls: type) -> str:
    """The column list of a row dataclass: its field names, in order."""
    return ", ".join(f.name for f in fields(cls))


def placeholders(cls: type) -> str:
    return ", ".join("?" * len(fields(cls)))


def values(obj: object) -> tuple:
    """A row dataclass as the tuple of its column values."""
    return tuple(getattr(obj, f.name) for f in fields(obj))  # type: ignore[arg-type]


def status_row(status: GroupStatus) -> tuple:
    summary = status.lag_summary
    return (*values(status)[:-1], None if summary is None else orjson.dumps(summary.to_list()).decode())


def group_status(row: tuple) -> GroupStatus:
    summary = None
    if row[-1] is not None:
        try:
            summary = LagSummary.from_list(orjson.loads(row[-1]))
        except (orjson.JSONDecodeError, TypeError, ValueError, IndexError):
            summary = None  # unreadable: the reporter recomputes this one from the history
    status = GroupStatus(*row[:-1])
    status.lag_summary = summary
    return status


def _point(offset: int | None, time: float) -> tuple[int, float] | None:
    return None if offset is None else (offset, time)


def lag_input(row: tuple) -> LagInput:
    """A row of sql.LAG_INPUTS_SQL as a LagInput."""
    g, t, p, c, cf, cl, newest, hb, hbt, ha, hat, ab, abt, aa, aat, ho, hot, hbf = row
    return LagInput(
        g,
        t,
        p,
        c,
        cf,
        cl,
        newest,
        _point(hb, hbt),
        _point(ha, hat),
        _point(ab, abt),
        _point(aa, aat),
        _point(ho, hot),
        hbf,
    )

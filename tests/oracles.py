"""Reference implementations the tests hold lagmon's fast paths to (no lagmon code uses them).

* ``history_bracket``: the store's bracket look-up over a whole history, by sorting;
* ``PartitionLag``, ``term_lag``, ``partition_lag``, ``group_lag``: the definition of a
  group's lag as the worst of its partitions' lags, evaluated one partition at a time
  (``timelag.group_lag_at`` computes the same from a LagSummary).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from lagmon.timelag import (
    GroupLag,
    HeadRow,
    LagInput,
    Point,
    Term,
    lag_seconds,
    partition_term,
    round_seconds,
)


class Bracket(NamedTuple):
    """The history points around one committed offset; field names match timelag.LagInput."""

    head_below: Point | None  # (offset, last_seen) of the row with the largest offset <= c
    head_above: Point | None  # (offset, first_seen) of the row with the smallest offset > c
    anchor_below: Point | None  # (offset, timestamp) of the largest anchor offset <= c
    anchor_above: Point | None  # (offset, timestamp) of the smallest anchor offset >= c
    newest_head: int | None  # largest head offset
    oldest_head: Point | None  # (offset, first_seen) of the row with the smallest offset
    head_below_since: float | None = None  # first_seen of the head_below row


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    seconds: float  # >= 0, finite
    lower_bound: bool  # True: the true lag is at least `seconds` (commit below the history)
    at: float  # evaluation time


def history_bracket(heads: Iterable[HeadRow | tuple], anchors: Iterable[Point], c: int) -> Bracket:
    """Reference implementation of the store's bracket look-up over a whole history.

    ``heads``: rows (offset, first_seen, last_seen) in any order (one per offset);
    ``anchors``: (offset, timestamp). Ties on offset: the later last_seen below,
    the earlier first_seen above (the same rule append_time applies).
    """
    rows = sorted(heads, key=lambda r: (r[0], r[1], r[2]))
    marks = sorted(anchors, key=lambda a: (a[0], a[1]))
    head_below: Point | None = None
    head_above: Point | None = None
    oldest: Point | None = None
    since: float | None = None
    newest: int | None = None
    if rows:
        offsets = [r[0] for r in rows]
        i = bisect.bisect_right(offsets, c)  # rows[:i] have offset <= c
        if i > 0:
            top = offsets[i - 1]
            j = bisect.bisect_left(offsets, top)
            row = max(rows[j:i], key=lambda r: r[2])
            head_below, since = (row[0], row[2]), row[1]
        head_above = (rows[i][0], rows[i][1]) if i < len(rows) else None
        newest = rows[-1][0]
        oldest = (rows[0][0], rows[0][1])
    anchor_below = anchor_above = None
    if marks:
        m_off = [a[0] for a in marks]
        k = bisect.bisect_right(m_off, c)
        if k > 0:
            top = m_off[k - 1]
            anchor_below = max((a for a in marks[bisect.bisect_left(m_off, top) : k]), key=lambda a: a[1])
        k = bisect.bisect_left(m_off, c)
        if k < len(marks):
            anchor_above = marks[k]
    return Bracket(head_below, head_above, anchor_below, anchor_above, newest, oldest, since)


def lag_input(
    b: Bracket,
    c: int,
    *,
    group_id: str = "g",
    topic: str = "t",
    partition: int = 0,
    commit_first_seen: float,
    commit_last_seen: float,
) -> LagInput:
    """The LagInput the store would build for committed offset ``c`` from bracket ``b``."""
    return LagInput(
        group_id,
        topic,
        partition,
        c,
        commit_first_seen,
        commit_last_seen,
        newest_head=b.newest_head,
        head_below=b.head_below,
        head_above=b.head_above,
        anchor_below=b.anchor_below,
        anchor_above=b.anchor_above,
        oldest_head=b.oldest_head,
        head_below_since=b.head_below_since,
    )


def term_lag(term: Term, now: float) -> PartitionLag:
    at = now if term.held_at is None else min(term.held_at, now)
    return PartitionLag(
        partition=term.partition, seconds=lag_seconds(at, term.t_star), lower_bound=term.lower_bound, at=at
    )


def partition_lag(inp: LagInput, now: float) -> PartitionLag | None:
    """Lag of one (group, topic, partition) at ``now`` (None: no commit)."""
    term = partition_term(inp)
    return None if term is None else term_lag(term, now)


def group_lag(parts: Iterable[PartitionLag | None], now: float) -> GroupLag:
    """The worst partition decides; ties go to the lowest partition number. None entries are skipped.

    This is the definition; the stages compute the same from a LagSummary (group_lag_at)."""
    worst: PartitionLag | None = None
    kept = [p for p in parts if p is not None]
    count = len(kept)
    for p in kept:
        s = p.seconds if math.isfinite(p.seconds) else 0.0
        if worst is None:
            worst = p
            continue
        w = worst.seconds if math.isfinite(worst.seconds) else 0.0
        if s > w or (s == w and p.partition < worst.partition):
            worst = p
    if worst is None:
        return GroupLag(seconds=0, worst_partition=None, lower_bound=False, partitions=0, calculated_at=now)
    seconds = round_seconds(worst.seconds) if math.isfinite(worst.seconds) else 0
    if seconds == 0:  # every partition current: as of the newest evaluation
        newest = max((p.at for p in kept if math.isfinite(p.at)), default=now)
        return GroupLag(
            seconds=0,
            worst_partition=None,
            lower_bound=False,
            partitions=count,
            calculated_at=min(newest, now),
        )
    return GroupLag(
        seconds=seconds,
        worst_partition=worst.partition,
        lower_bound=worst.lower_bound,
        partitions=count,
        calculated_at=worst.at,
    )

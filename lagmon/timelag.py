"""Time lag by interpolation in a history of partition head offsets (pure, no I/O).

Vocabulary (see design.md "Time lag definitions"):

* a *point* ``(offset, time)`` means: at ``time`` the partition head was ``offset``;
* a head row ``(offset, first_seen, last_seen)`` is a lower-bracket candidate
  ``(offset, last_seen)`` and an upper-bracket candidate ``(offset, first_seen)``;
* an anchor ``(o, ts)`` (message ``o`` was appended at ``ts``) is a lower candidate
  ``(o, ts)`` if ``o <= c`` and an upper candidate ``(o + 1, ts)`` if ``o + 1 > c``.

The committed offset ``c`` is the next message the group reads, so the group's
time lag is ``at - t*`` where ``t*`` estimates when message ``c`` was appended.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Optional, Sequence

Point = tuple[int, float]          # (offset, time)
HeadRow = tuple[int, float, float]  # (offset, first_seen, last_seen)

__all__ = [
    "Bracket",
    "GroupLag",
    "PartitionLag",
    "anchor_candidates",
    "append_time",
    "evaluation_time",
    "group_lag",
    "group_lags",
    "history_bracket",
    "partition_lag",
]


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    seconds: float        # >= 0, finite
    lower_bound: bool     # True: the true lag is at least `seconds` (commit below the history)
    at: float             # evaluation time


@dataclass(frozen=True)
class GroupLag:
    seconds: int
    worst_partition: Optional[int]
    lower_bound: bool
    partitions: int
    calculated_at: float


class Bracket(NamedTuple):
    """What a store returns for one committed offset; field names match store.LagInput."""

    head_below: Optional[Point]    # (offset, last_seen) of the row with the largest offset <= c
    head_above: Optional[Point]    # (offset, first_seen) of the row with the smallest offset > c
    anchor_below: Optional[Point]  # (offset, timestamp) of the largest anchor offset <= c
    anchor_above: Optional[Point]  # (offset, timestamp) of the smallest anchor offset >= c
    newest_head: Optional[int]     # largest head offset
    oldest_head: Optional[Point]   # (offset, first_seen) of the row with the smallest offset


def _finite_points(points: Iterable[Point]) -> list[Point]:
    return [(int(o), float(t)) for o, t in points if math.isfinite(t)]


def append_time(c: int, below: Sequence[Point], above: Sequence[Point]) -> tuple[float, bool]:
    """Estimated append time ``t*`` of message ``c`` and whether it only bounds the lag.

    ``below``: candidates (offset <= c, time); ``above``: candidates (offset > c, time).
    Candidates on the wrong side of ``c`` or with a non-finite time are ignored.
    A = largest offset (ties: latest time); B = smallest offset (ties: earliest time).
    ``t* = tA + (c - hA) * (tB - tA) / (hB - hA)`` clamped into [min(tA, tB), max(tA, tB)].
    Only B -> ``(tB, True)``: no extrapolation below the history, the lag is a lower bound.
    Raises ValueError when there is no B (the caller treats that as caught up).
    """
    lows = [p for p in _finite_points(below) if p[0] <= c]
    highs = [p for p in _finite_points(above) if p[0] > c]
    if not highs:
        raise ValueError(f"no upper bracket candidate above committed offset {c}")
    h_b, t_b = min(highs, key=lambda p: (p[0], p[1]))
    if not lows:
        return t_b, True
    h_a, t_a = max(lows, key=lambda p: (p[0], p[1]))
    if h_b <= h_a:  # impossible after the filtering above; never divide by zero
        return t_a, False
    t = t_a + (c - h_a) * (t_b - t_a) / (h_b - h_a)
    lo, hi = min(t_a, t_b), max(t_a, t_b)
    if not math.isfinite(t):
        t = t_a
    return min(max(t, lo), hi), False


def anchor_candidates(c: int, anchors: Iterable[Optional[Point]]) -> tuple[list[Point], list[Point]]:
    """(lower, upper) candidates from anchors ``(o, ts)``: lower (o, ts) if o <= c, upper (o+1, ts) if o+1 > c."""
    lows: list[Point] = []
    highs: list[Point] = []
    for anchor in anchors:
        if anchor is None:
            continue
        o, ts = anchor
        if o <= c:
            lows.append((o, ts))
        if o + 1 > c:
            highs.append((o + 1, ts))
    return lows, highs


def evaluation_time(commit_first_seen: float, commit_last_seen: float, now: float) -> float:
    """``now`` if the latest commit row is static (seen more than once), else its sample time; never after now."""
    at = now if commit_last_seen > commit_first_seen else commit_last_seen
    if not math.isfinite(at):
        return now
    return min(at, now)


def partition_lag(inp, now: float) -> Optional[PartitionLag]:
    """Lag of one (group, topic, partition) from a store.LagInput-like object (duck-typed).

    Returns None for a negative committed offset (no commit). Caught up (no head known,
    or committed >= newest head) -> 0 seconds.
    """
    c = int(inp.committed)
    if c < 0:
        return None
    at = evaluation_time(inp.commit_first_seen, inp.commit_last_seen, now)

    def result(seconds: float, lower_bound: bool, at: float) -> PartitionLag:
        if not math.isfinite(seconds) or seconds < 0:
            seconds = 0.0
        return PartitionLag(partition=int(inp.partition), seconds=float(seconds),
                            lower_bound=lower_bound, at=at)

    if inp.newest_head is None or c >= inp.newest_head:
        # Caught up as of the sample that saw it; nothing says it still is at `now`.
        seen = min(inp.commit_last_seen, now) if math.isfinite(inp.commit_last_seen) else now
        return result(0.0, False, seen)
    below, above = anchor_candidates(c, (inp.anchor_below, inp.anchor_above))
    if inp.head_below is not None:
        below.append(inp.head_below)
    if inp.head_above is not None:
        above.append(inp.head_above)
    if inp.oldest_head is not None and inp.oldest_head[0] > c:
        above.append(inp.oldest_head)  # a head row too; it only matters if head_above is missing
    try:
        t_star, lower_bound = append_time(c, below, above)
    except ValueError:
        return result(0.0, False, at)  # no point above c although c < newest head: treat as caught up
    return result(at - t_star, lower_bound, at)


def history_bracket(heads: Iterable[HeadRow], anchors: Iterable[Point], c: int) -> Bracket:
    """Reference implementation of the store's bracket look-up over a whole history.

    ``heads``: rows (offset, first_seen, last_seen) in any order (one per offset);
    ``anchors``: (offset, timestamp). Ties on offset: the later last_seen below,
    the earlier first_seen above (the same rule append_time applies).
    """
    rows = sorted(heads, key=lambda r: (r[0], r[1], r[2]))
    marks = sorted(anchors, key=lambda a: (a[0], a[1]))
    if not rows:
        head_below = head_above = oldest = None
        newest = None
    else:
        offsets = [r[0] for r in rows]
        i = bisect.bisect_right(offsets, c)  # rows[:i] have offset <= c
        head_below = None
        if i > 0:
            top = offsets[i - 1]
            j = bisect.bisect_left(offsets, top)
            head_below = max(((r[0], r[2]) for r in rows[j:i]), key=lambda p: p[1])
        head_above = (rows[i][0], rows[i][1]) if i < len(rows) else None
        newest = rows[-1][0]
        oldest = (rows[0][0], rows[0][1])
    anchor_below = anchor_above = None
    if marks:
        m_off = [a[0] for a in marks]
        k = bisect.bisect_right(m_off, c)
        if k > 0:
            top = m_off[k - 1]
            anchor_below = max((a for a in marks[bisect.bisect_left(m_off, top):k]), key=lambda a: a[1])
        k = bisect.bisect_left(m_off, c)
        if k < len(marks):
            anchor_above = marks[k]
    return Bracket(head_below, head_above, anchor_below, anchor_above, newest, oldest)


def _round(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return int(math.floor(seconds + 0.5))


def group_lag(parts: Iterable[Optional[PartitionLag]], now: float) -> GroupLag:
    """The worst partition decides; ties go to the lowest partition number. None entries are skipped."""
    worst: Optional[PartitionLag] = None
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
    seconds = _round(worst.seconds) if worst is not None else 0
    if worst is None:
        return GroupLag(seconds=0, worst_partition=None, lower_bound=False, partitions=0, calculated_at=now)
    if seconds == 0:  # every partition current: as of the newest evaluation
        newest = max((p.at for p in kept if math.isfinite(p.at)), default=now)
        return GroupLag(seconds=0, worst_partition=None, lower_bound=False,
                        partitions=count, calculated_at=min(newest, now))
    return GroupLag(seconds=seconds, worst_partition=worst.partition, lower_bound=worst.lower_bound,
                    partitions=count, calculated_at=worst.at)


def group_lags(inputs: Iterable, now: float, keys: Iterable[tuple[str, str]] = ()) -> dict[tuple[str, str], GroupLag]:
    """group_lag of every (group_id, topic) in LagInput-like `inputs`; each of `keys` is
    present too, with lag 0 over no partitions when no input names it."""
    parts: dict[tuple[str, str], list[PartitionLag]] = {k: [] for k in keys}
    for inp in inputs:
        lag = partition_lag(inp, now)
        if lag is not None:
            parts.setdefault((inp.group_id, inp.topic), []).append(lag)
    return {k: group_lag(v, now) for k, v in parts.items()}

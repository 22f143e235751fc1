"""Time lag by interpolation in a history of partition head offsets (pure, no I/O).

Vocabulary:

* a *point* ``(offset, time)`` means: at ``time`` the partition head was ``offset``;
* a head row ``(offset, first_seen, last_seen)`` is a lower-bracket candidate
  ``(offset, last_seen)`` and an upper-bracket candidate ``(offset, first_seen)``;
* an anchor ``(o, ts)`` (message ``o`` was appended at ``ts``) is a lower candidate
  ``(o, ts)`` if ``o <= c`` and an upper candidate ``(o + 1, ts)`` if ``o + 1 > c``.

The committed offset ``c`` is the next message the group reads, so the group's
time lag is ``at - t*`` where ``t*`` estimates when message ``c`` was appended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

Point = tuple[int, float]  # (offset, time)

# Lags above this many seconds (~68 years, fits an int32) are reported as this.
MAX_SECONDS = 2**31 - 1

__all__ = [
    "MAX_SECONDS",
    "GroupLag",
    "Growing",
    "HeadRow",
    "Held",
    "LagInput",
    "LagSummary",
    "Term",
    "anchor_candidates",
    "append_time",
    "behind_since",
    "evaluation_time",
    "group_lag_at",
    "group_lags",
    "group_summaries",
    "lag_seconds",
    "overtaken_at",
    "partition_term",
    "partition_terms",
    "round_seconds",
    "summarize",
]


class HeadRow(NamedTuple):
    """One partition head offset of the history, seen in every sample from first_seen to last_seen."""

    offset: int
    first_seen: float
    last_seen: float


class LagInput(NamedTuple):  # a tuple: the store builds one per group-partition per sample
    """All one (group, topic, partition)'s lag depends on: its latest commit and the history
    points bracketing it (the store's lag_inputs)."""

    group_id: str
    topic: str
    partition: int
    committed: int
    commit_first_seen: float
    commit_last_seen: float
    newest_head: int | None  # largest head offset
    head_below: Point | None  # (offset, last_seen) of the row with the largest offset <= committed
    head_above: Point | None  # (offset, first_seen) of the row with the smallest offset > committed
    anchor_below: Point | None  # (offset, timestamp) of the largest anchor offset <= committed
    anchor_above: Point | None  # (offset, timestamp) of the smallest anchor offset >= committed
    oldest_head: Point | None  # (offset, first_seen) of the row with the smallest offset
    head_below_since: float | None = None  # first_seen of the head_below row


def round_seconds(seconds: float) -> int:
    """A lag in whole seconds, rounded half up (0.4 -> 0, 0.5 -> 1, 2.5 -> 3).

    NaN, zero and negative -> 0; +inf and anything >= MAX_SECONDS -> MAX_SECONDS.
    """
    if math.isnan(seconds) or seconds <= 0:
        return 0
    if seconds >= MAX_SECONDS:
        return MAX_SECONDS
    return math.floor(seconds + 0.5)


@dataclass(frozen=True)
class GroupLag:
    seconds: int
    worst_partition: int | None
    lower_bound: bool
    partitions: int
    calculated_at: float
    # The worst partition's lag before rounding: round_seconds(exact) == seconds, capped at
    # MAX_SECONDS. Not compared: two lags are the same lag when their whole seconds are.
    exact: float = field(default=0.0, compare=False)


def append_time(c: int, below: Sequence[Point], above: Sequence[Point]) -> tuple[float, bool]:
    """Estimated append time ``t*`` of message ``c`` and whether it only bounds the lag.

    ``below``: candidates (offset <= c, time); ``above``: candidates (offset > c, time).
    Candidates on the wrong side of ``c`` or with a non-finite time are ignored.
    A = largest offset (ties: latest time); B = smallest offset (ties: earliest time).
    ``t* = tA`` at ``c == hA``, else ``tA + (c + 1/2 - hA) * (tB - tA) / (hB - hA)``, clamped
    into [min(tA, tB), max(tA, tB)].
    Only B -> ``(tB, True)``: no extrapolation below the history, the lag is a lower bound.
    Raises ValueError when there is no B (the caller treats that as caught up).
    """
    # (Plain loops: this runs once per group-partition per sample.)
    h_b: int | None = None
    t_b = 0.0  # read only once h_b is set
    for o, t in above:
        o, t = int(o), float(t)
        if o > c and math.isfinite(t) and (h_b is None or o < h_b or (o == h_b and t < t_b)):
            h_b, t_b = o, t
    if h_b is None:
        raise ValueError(f"no upper bracket candidate above committed offset {c}")
    h_a: int | None = None
    t_a = 0.0
    for o, t in below:
        o, t = int(o), float(t)
        if o <= c and math.isfinite(t) and (h_a is None or o > h_a or (o == h_a and t > t_a)):
            h_a, t_a = o, t
    if h_a is None:
        return t_b, True
    if h_b <= h_a:  # impossible after the filtering above; never divide by zero
        return t_a, False
    # Strictly inside the bracket, message c sits half a message past the line through the two
    # points: a head read at a random instant is on average half a message above the line
    # through the append times, so interpolating c itself dates it half a message early and
    # over-reports steady traffic by 0.5 / rate. At c == hA (an exact match) t* is tA.
    t = t_a if c == h_a else t_a + (c - h_a + 0.5) * (t_b - t_a) / (h_b - h_a)
    lo, hi = min(t_a, t_b), max(t_a, t_b)
    if not math.isfinite(t):
        t = t_a
    return min(max(t, lo), hi), False


def anchor_candidates(c: int, anchors: Iterable[Point | None]) -> tuple[list[Point], list[Point]]:
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


def _holds_at(commit_first_seen: float, commit_last_seen: float, overtaken: float | None) -> float | None:
    """None: the lag grows with now (see evaluation_time); else the time it holds at."""
    static = commit_last_seen > commit_first_seen
    behind = overtaken is None or not math.isfinite(overtaken) or overtaken <= commit_last_seen
    if (static and behind) or not math.isfinite(commit_last_seen):
        return None
    return commit_last_seen


def evaluation_time(
    commit_first_seen: float, commit_last_seen: float, now: float, overtaken_at: float | None = None
) -> float:
    """When a commit's lag holds: ``now`` if the commit is static (seen more than once) and was
    already behind at its latest sample, else that sample's time; never after now.

    ``overtaken_at`` is when a head above the committed offset was first seen. Heads are read
    after commits in a sample, so a later ``overtaken_at`` means the commit was caught up (or
    had not been overtaken) when last read: a burst that has just passed a caught-up consumer
    says nothing about whether the consumer has stopped, and is not extrapolated to now.
    """
    at = _holds_at(commit_first_seen, commit_last_seen, overtaken_at)
    return now if at is None else min(at, now)


def behind_since(inp: LagInput) -> float | None:
    """The earliest evidence that a message at or above the committed offset existed: the
    first sample of a head above it (overtaken_at), or the timestamp of an anchor at or above
    it (a message read at offset >= c; messages are appended in offset order). A static
    commit last read after that instant was already behind when read, so its lag grows from
    that sample on: a burst past a caught-up group is dated by its message's own time at the
    first sample that sees it, and grows from there. (It errs high for a group that consumes
    the burst between that read of its commit and its next commit: until the next sample.)"""
    seen = overtaken_at(inp)
    anchor = inp.anchor_above
    if anchor is not None and anchor[0] >= int(inp.committed) and math.isfinite(anchor[1]):
        seen = anchor[1] if seen is None else min(seen, anchor[1])
    return seen


def overtaken_at(inp: LagInput) -> float | None:
    """first_seen of the smallest head row above the committed offset (head rows are samples;
    anchors are message times, not observations, so they do not count)."""
    c = int(inp.committed)
    if inp.head_above is not None:
        return inp.head_above[1]
    if inp.oldest_head is not None and inp.oldest_head[0] > c:
        return inp.oldest_head[1]
    return None


class Term(NamedTuple):
    """A partition's lag as a function of ``now``: ``at - t_star``, where ``at`` is ``now``
    (held_at None: the lag grows) or ``min(held_at, now)``. t_star None: caught up, 0 s."""

    partition: int
    t_star: float | None
    lower_bound: bool
    held_at: float | None


def partition_term(inp: LagInput) -> Term | None:
    """The Term of one (group, topic, partition).

    None for a negative committed offset (no commit). Caught up (no head known, or
    committed >= newest head) -> t_star None, held at the sample that saw it: nothing says
    it is still caught up at ``now``.
    """
    c = int(inp.committed)
    if c < 0:
        return None
    partition = int(inp.partition)
    if inp.newest_head is None or c >= inp.newest_head:
        seen = inp.commit_last_seen if math.isfinite(inp.commit_last_seen) else None
        return Term(partition, None, False, seen)
    held_at = _holds_at(inp.commit_first_seen, inp.commit_last_seen, behind_since(inp))
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
        return Term(partition, None, False, held_at)  # no point above c although c < newest head
    return Term(partition, t_star, lower_bound, held_at)


def lag_seconds(at: float, t_star: float | None) -> float:
    """``at - t_star``, never negative or NaN; 0 when caught up (t_star None)."""
    seconds = 0.0 if t_star is None else at - t_star
    return float(seconds) if math.isfinite(seconds) and seconds > 0 else 0.0


class Growing(NamedTuple):
    """The partition whose lag grows with ``now`` from the oldest append time."""

    t_star: float
    partition: int
    lower_bound: bool


class Held(NamedTuple):
    """The worst partition whose lag holds at the sample ``at`` that saw it."""

    seconds: float
    partition: int
    lower_bound: bool
    at: float


class LagSummary(NamedTuple):
    """All a group/topic's lag at any later ``now`` depends on, from one sample's partitions:
    the sampler stores it, so the reporter never reads per-partition history.

    ``group_lag_at(summarize(terms), now)`` equals the worst of the terms' lags at ``now`` (ties:
    lowest partition) for every ``now`` at or after their held_at times; tests/oracles.py
    spells that definition out and the property tests hold the two to it.
    """

    partitions: int
    growing: Growing | None  # oldest t* of the partitions evaluated at now
    any_growing: bool  # some partition is evaluated at now
    held: Held | None  # worst of the partitions that hold
    held_newest_at: float | None  # newest at of the held partitions

    def to_list(self) -> list:
        return [
            self.partitions,
            None if self.growing is None else list(self.growing),
            self.any_growing,
            None if self.held is None else list(self.held),
            self.held_newest_at,
        ]

    @classmethod
    def from_list(cls, v: Sequence) -> LagSummary:
        partitions, growing, any_growing, held, newest = v
        return cls(
            int(partitions),
            None if growing is None else Growing(float(growing[0]), int(growing[1]), bool(growing[2])),
            bool(any_growing),
            None if held is None else Held(float(held[0]), int(held[1]), bool(held[2]), float(held[3])),
            None if newest is None else float(newest),
        )


def summarize(terms: Iterable[Term]) -> LagSummary:
    count, any_growing = 0, False
    growing: Growing | None = None
    held: Held | None = None
    newest: float | None = None
    for t in terms:
        count += 1
        if t.held_at is None:
            any_growing = True
            if t.t_star is not None and math.isfinite(t.t_star):
                if growing is None or (t.t_star, t.partition) < (growing.t_star, growing.partition):
                    growing = Growing(t.t_star, t.partition, t.lower_bound)
            continue
        at = t.held_at
        seconds = lag_seconds(at, t.t_star)
        newest = at if newest is None else max(newest, at)
        if (
            held is None
            or seconds > held.seconds
            or (seconds == held.seconds and t.partition < held.partition)
        ):
            held = Held(seconds, t.partition, t.lower_bound, at)
    return LagSummary(count, growing, any_growing, held, newest)


def group_lag_at(summary: LagSummary, now: float) -> GroupLag:
    """The group/topic's lag at ``now`` from its LagSummary (the reporter's whole per-group
    computation): the worst partition decides, ties go to the lowest partition number."""
    if summary.partitions == 0:
        return GroupLag(seconds=0, worst_partition=None, lower_bound=False, partitions=0, calculated_at=now)
    cands: list[Held] = []
    if summary.growing is not None:
        g = summary.growing
        cands.append(Held(lag_seconds(now, g.t_star), g.partition, g.lower_bound, now))
    if summary.held is not None:
        h = summary.held
        cands.append(h._replace(at=min(h.at, now)))
    worst = max(cands, key=lambda c: (c.seconds, -c.partition)) if cands else None
    seconds = 0 if worst is None else round_seconds(worst.seconds)
    exact = 0.0 if worst is None else min(max(worst.seconds, 0.0), float(MAX_SECONDS))
    if worst is None or seconds == 0:  # every partition current: as of the newest evaluation
        newest = now if summary.any_growing or summary.held_newest_at is None else summary.held_newest_at
        return GroupLag(
            seconds=0,
            worst_partition=None,
            lower_bound=False,
            partitions=summary.partitions,
            calculated_at=min(newest, now),
            exact=exact,
        )
    return GroupLag(
        seconds=seconds,
        worst_partition=worst.partition,
        lower_bound=worst.lower_bound,
        partitions=summary.partitions,
        calculated_at=worst.at,
        exact=exact,
    )


def partition_terms(inputs: Iterable[LagInput]) -> list[Term | None]:
    """partition_term of each input, in order. Inputs that differ only in their group (groups
    at the same commit of a partition, with the same history) share one computation."""
    memo: dict[tuple, Term | None] = {}
    out: list[Term | None] = []
    for inp in inputs:
        key = inp[1:]
        if key in memo:
            out.append(memo[key])
        else:
            out.append(memo.setdefault(key, partition_term(inp)))
    return out


def group_summaries(
    inputs: Iterable[LagInput],
    keys: Iterable[tuple[str, str]] = (),
    terms: Sequence[Term | None] | None = None,
) -> dict[tuple[str, str], LagSummary]:
    """The LagSummary of every (group_id, topic) in `inputs`; each of `keys` is
    present too, over no partitions when no input names it. `terms`: partition_terms(inputs),
    when the caller has them already."""
    inputs = inputs if isinstance(inputs, list) else list(inputs)
    if terms is None:
        terms = partition_terms(inputs)
    by_key: dict[tuple[str, str], list[Term]] = {k: [] for k in keys}
    for inp, term in zip(inputs, terms, strict=True):
        if term is not None:
            key = (inp.group_id, inp.topic)
            got = by_key.get(key)
            if got is None:
                by_key[key] = [term]
            else:
                got.append(term)
    return {k: summarize(v) for k, v in by_key.items()}


def group_lags(
    inputs: Iterable[LagInput], now: float, keys: Iterable[tuple[str, str]] = ()
) -> dict[tuple[str, str], GroupLag]:
    """The lag (group_lag_at) of every (group_id, topic) in `inputs` at ``now``, by way of
    their summaries; each of `keys` is present too, with lag 0 over no partitions when no
    input names it."""
    return {k: group_lag_at(s, now) for k, s in group_summaries(inputs, keys).items()}

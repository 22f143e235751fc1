"""The figures beyond the time lag, per group/topic (pure, no I/O; ``now`` is passed in).

The sampler computes them at each sample from the same lag inputs as the time lag, plus the
partitions' log start offsets, and stores them (store.save_group_figures); the reporter turns
them into lag.json's additive fields at its own ``now``:

* ``offset_lag``: sum over the partitions of ``head - committed`` (never negative);
* ``worst_partition_offset_lag``: the offset lag of lag.json's ``worst_partition`` (the
  largest partition offset lag when the time lag is 0);
* ``messages_lost``: sum over the partitions of ``max(0, log_start - committed)``: messages
  retention deleted before the group read them (0 normally);
* ``catch_up_seconds``: seconds until the time lag reaches zero at its current trend: a
  least-squares line through the group's recent time lags (the last TREND_POINTS samples
  since the lag was last 0, stored, so the trend survives restarts). None while the line
  does not fall (fewer than MIN_TREND_POINTS points, flat or growing lag); 0 when the lag
  is 0; never negative, NaN or above MAX_SECONDS.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from lagmon import timelag
from lagmon.timelag import MAX_SECONDS, LagInput, LagSummary

TREND_POINTS = 10  # samples the trend is fitted through
MIN_TREND_POINTS = 3  # fewer: no trend yet (catch-up unknown)

Key = tuple[str, str]
Point = tuple[float, float]  # (sample time, time lag in seconds)


class PartitionFigure(NamedTuple):
    """One partition of a group/topic at a sample: offsets, and its timelag.Term (t_star,
    held_at, lower_bound) so its time lag can be evaluated at any later ``now``."""

    partition: int
    committed: int
    head: int | None
    log_start: int | None
    t_star: float | None
    held_at: float | None
    lower_bound: bool

    @property
    def offset_lag(self) -> int:
        return max(0, self.head - self.committed) if self.head is not None else 0

    @property
    def lost(self) -> int:
        return max(0, self.log_start - self.committed) if self.log_start is not None else 0

    def lag_at(self, now: float) -> float:
        at = now if self.held_at is None else min(self.held_at, now)
        return timelag.lag_seconds(at, self.t_star)


@dataclass(frozen=True)
class GroupFigures:
    group_id: str
    topic: str
    sampled_at: float
    offset_lag: int
    messages_lost: int
    catch_up_at: float | None  # when the trend line reaches 0 lag; None: not shrinking
    trend: tuple[Point, ...]
    partitions: tuple[PartitionFigure, ...]

    def trend_list(self) -> list:
        return [list(p) for p in self.trend]

    def partitions_list(self) -> list:
        return [list(p) for p in self.partitions]

    @classmethod
    def from_lists(
        cls,
        group_id: str,
        topic: str,
        sampled_at: float,
        offset_lag: int,
        messages_lost: int,
        catch_up_at: float | None,
        trend: Sequence,
        partitions: Sequence,
    ) -> GroupFigures:
        return cls(
            group_id,
            topic,
            float(sampled_at),
            int(offset_lag),
            int(messages_lost),
            None if catch_up_at is None else float(catch_up_at),
            tuple((float(t), float(v)) for t, v in trend),
            tuple(
                PartitionFigure(
                    int(p),
                    int(c),
                    None if h is None else int(h),
                    None if s is None else int(s),
                    None if ts is None else float(ts),
                    None if held is None else float(held),
                    bool(lb),
                )
                for p, c, h, s, ts, held, lb in partitions
            ),
        )


def raw_lag(summary: LagSummary, now: float) -> float:
    """The group/topic's time lag at ``now`` in seconds, unrounded (timelag.group_lag_at's
    worst partition before rounding)."""
    worst = 0.0
    if summary.growing is not None:
        worst = max(worst, timelag.lag_seconds(now, summary.growing.t_star))
    if summary.held is not None and math.isfinite(summary.held.seconds):
        worst = max(worst, summary.held.seconds)
    return worst


def next_trend(previous: Iterable[Point], at: float, lag: float, max_age: float) -> tuple[Point, ...]:
    """The trend points after a sample at ``at`` with time lag ``lag``: the previous ones
    younger than max_age and before ``at``, then this one; restarted when the lag is 0
    (a lag that rises again after a catch-up is a new episode); at most TREND_POINTS."""
    if not math.isfinite(lag) or timelag.round_seconds(lag) == 0:
        return ((at, 0.0),)
    kept = [(t, v) for t, v in previous if at - max_age < t < at and math.isfinite(v) and v > 0]
    return (*kept, (at, float(lag)))[-TREND_POINTS:]


def catch_up_at(points: Sequence[Point]) -> float | None:
    """When the least-squares line through ``points`` reaches 0 lag; None unless it falls."""
    pts = [(t, v) for t, v in points if math.isfinite(t) and math.isfinite(v) and v > 0]
    if len(pts) < MIN_TREND_POINTS:
        return None
    n = len(pts)
    t0 = pts[0][0]  # relative times keep the sums well conditioned
    t_mean = sum(t - t0 for t, _ in pts) / n
    v_mean = sum(v for _, v in pts) / n
    var = sum((t - t0 - t_mean) ** 2 for t, _ in pts)
    if var <= 0:
        return None
    slope = sum((t - t0 - t_mean) * (v - v_mean) for t, v in pts) / var
    if not (math.isfinite(slope) and slope < 0):
        return None
    at = t0 + t_mean + v_mean / -slope
    return at if math.isfinite(at) else None


def catch_up_seconds(catch_up: float | None, lag_seconds: float, now: float) -> float | None:
    """Seconds from ``now`` to ``catch_up`` (catch_up_at): 0 when the lag is 0, None when not
    shrinking, else within [0, MAX_SECONDS]."""
    if timelag.round_seconds(lag_seconds) == 0:
        return 0.0
    if catch_up is None or not math.isfinite(catch_up):
        return None
    return min(float(MAX_SECONDS), max(0.0, catch_up - now))


def worst_partition_offset_lag(figures: GroupFigures, worst_partition: int | None) -> int:
    """The offset lag of the worst partition (by time lag); the largest one when there is none."""
    by_partition = {p.partition: p.offset_lag for p in figures.partitions}
    if worst_partition is not None and worst_partition in by_partition:
        return by_partition[worst_partition]
    return max(by_partition.values(), default=0)


def compute(
    inputs: Iterable[LagInput],
    summaries: Mapping[Key, LagSummary],
    log_starts: Mapping[tuple[str, int], int],
    previous: Mapping[Key, GroupFigures],
    now: float,
    max_age: float,
    terms: Iterable[timelag.Term | None] | None = None,
) -> list[GroupFigures]:
    """The figures of every group/topic in ``summaries`` at a sample at ``now``.

    ``inputs``: the lag inputs of that sample (committed offset and newest head per
    partition); ``log_starts``: (topic, partition) -> log start offset read at this sample
    (a partition missing there keeps the one stored with ``previous``); ``previous``: the
    stored figures (their trend points and log starts); ``max_age``: trend points older
    than this many seconds are dropped; ``terms``: timelag.partition_terms(inputs), when the
    caller has them already."""
    inputs = list(inputs)
    new = tuple.__new__
    parts: dict[Key, list[PartitionFigure]] = {k: [] for k in summaries}
    for inp, term in zip(inputs, timelag.partition_terms(inputs) if terms is None else terms, strict=True):
        key = (inp.group_id, inp.topic)
        if key not in parts or inp.committed < 0:
            continue
        start = log_starts.get((inp.topic, inp.partition))
        if start is None and key in previous:
            start = next(
                (p.log_start for p in previous[key].partitions if p.partition == inp.partition), None
            )
        figure = (
            int(inp.partition),
            int(inp.committed),
            inp.newest_head,
            start,
            None if term is None else term.t_star,
            None if term is None else term.held_at,
            False if term is None else term.lower_bound,
        )
        parts[key].append(new(PartitionFigure, figure))  # (tuple.__new__: no Python call per row)
    out = []
    for key, summary in summaries.items():
        ps = tuple(sorted(parts[key]))
        old = previous.get(key)
        trend = next_trend(old.trend if old is not None else (), now, raw_lag(summary, now), max_age)
        offset_lag = lost = 0  # the sums of the partitions' offset_lag and lost, in one pass
        for p in ps:
            if p.head is not None and p.head > p.committed:
                offset_lag += p.head - p.committed
            if p.log_start is not None and p.log_start > p.committed:
                lost += p.log_start - p.committed
        out.append(
            GroupFigures(
                key[0],
                key[1],
                now,
                offset_lag,
                lost,
                catch_up_at(trend),
                trend,
                ps,
            )
        )
    return out

"""lagmon.timelag: a group's lag from its partitions, the stored LagSummary, and round_seconds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lagmon.timelag import (
    MAX_SECONDS,
    GroupLag,
    Growing,
    Held,
    LagSummary,
    Term,
    group_lag_at,
    group_lags,
    round_seconds,
    summarize,
)
from tests.histories import T0, histories, lag_input
from tests.oracles import PartitionLag, group_lag, partition_lag, term_lag

PROPS = settings(max_examples=150, deadline=None)


# ---------------------------------------------------------------- group_lag

part_lags = st.builds(
    PartitionLag,
    partition=st.integers(0, 50),
    seconds=st.floats(0, 1e7),
    lower_bound=st.booleans(),
    at=st.floats(T0, T0 + 1e6),
)


@PROPS
@given(parts=st.lists(part_lags, max_size=12, unique_by=lambda p: p.partition), now=st.floats(T0, T0 + 2e6))
def test_group_lag_picks_the_worst_partition(parts, now):
    g = group_lag(parts, now)
    assert isinstance(g.seconds, int) and g.seconds >= 0
    assert g.partitions == len(parts)
    if not parts or g.seconds == 0:
        # current: dated by the newest evaluation, never after now
        expected = min(max((p.at for p in parts), default=now), now)
        assert g.worst_partition is None and g.calculated_at == expected and not g.lower_bound
        assert all(p.seconds < 0.5 for p in parts)
        return
    top = max(p.seconds for p in parts)
    worst = min((p for p in parts if p.seconds == top), key=lambda p: p.partition)
    assert g.seconds == math.floor(top + 0.5)
    assert g.worst_partition == worst.partition
    assert g.lower_bound == worst.lower_bound
    assert g.calculated_at == worst.at


def test_group_lag_examples():
    assert group_lag([], 5.0) == GroupLag(0, None, False, 0, 5.0)
    parts = [
        PartitionLag(2, 30.4, False, 1.0),
        PartitionLag(0, 30.4, True, 2.0),
        PartitionLag(1, 0.0, False, 3.0),
    ]
    assert group_lag(parts, 9.0) == GroupLag(30, 0, True, 3, 2.0)
    assert group_lag([PartitionLag(4, 0.2, False, 1.0)], 9.0) == GroupLag(0, None, False, 1, 1.0)
    assert (
        group_lag([PartitionLag(4, 0.0, False, 1.0), PartitionLag(5, 0.0, False, 7.0)], 9.0).calculated_at
        == 7.0
    )
    assert group_lag([PartitionLag(4, 2.5, False, 1.0), None], 9.0) == GroupLag(3, 4, False, 1, 1.0)


# ---------------------------------------------------------------- summaries (what the reporter reads)

# Small integer-valued times make ties (equal lags, equal t*) common.
times = st.integers(0, 60).map(float)
terms = st.builds(
    Term,
    partition=st.integers(0, 5),
    t_star=st.none() | times,
    lower_bound=st.booleans(),
    held_at=st.none() | times,
)


@PROPS
@given(ts=st.lists(terms, max_size=8, unique_by=lambda t: t.partition), after=st.integers(0, 90))
def test_summary_gives_the_group_lag_at_any_later_now(ts, after):
    """The reporter's answer from a stored summary equals the per-partition computation."""
    now = max((t.held_at for t in ts if t.held_at is not None), default=0.0) + after
    summary = summarize(ts)
    assert LagSummary.from_list(summary.to_list()) == summary
    assert group_lag_at(summary, now) == group_lag([term_lag(t, now) for t in ts], now)


@PROPS
@given(ts=st.lists(terms, max_size=8, unique_by=lambda t: t.partition), after=st.floats(0, 90))
def test_exact_lag_rounds_to_the_reported_seconds(ts, after):
    """lag_seconds_exact is the worst partition's lag before rounding: it rounds to the whole
    seconds reported, and it is the largest of the partitions' lags at now."""
    now = max((t.held_at for t in ts if t.held_at is not None), default=0.0) + after
    g = group_lag_at(summarize(ts), now)
    assert round_seconds(g.exact) == g.seconds
    lags = [p.seconds for p in (term_lag(t, now) for t in ts) if p is not None]
    assert g.exact == pytest.approx(max(lags, default=0.0), abs=1e-9)


@PROPS
@given(h=histories(), extra=st.floats(0, 86_400), data=st.data())
def test_group_lags_equal_partition_by_partition_on_histories(h, extra, data):
    commits = data.draw(st.lists(st.integers(max(0, h.base - 3), h.newest + 2), min_size=1, max_size=5))
    last = h.samples[-1]
    firsts = data.draw(
        st.lists(st.sampled_from([last, last - 30.0]), min_size=len(commits), max_size=len(commits))
    )
    inputs = [
        lag_input(h.rows, c, partition=i, commit_first=f, commit_last=last)
        for i, (c, f) in enumerate(zip(commits, firsts, strict=False))
    ]
    now = last + extra
    assert group_lags(inputs, now) == {("g", "t"): group_lag([partition_lag(i, now) for i in inputs], now)}


def test_summary_examples():
    # partition 1 grows with now from t*=10; partition 0 holds 40 s at 50
    s = summarize([Term(0, 10.0, False, 50.0), Term(1, 10.0, True, None), Term(2, None, False, 55.0)])
    assert s == LagSummary(3, Growing(10.0, 1, True), True, Held(40.0, 0, False, 50.0), 55.0)
    assert s.growing is not None and s.growing.t_star == 10.0 and s.growing.partition == 1
    assert s.held is not None and (s.held.seconds, s.held.at) == (40.0, 50.0)
    assert group_lag_at(s, 50.0) == GroupLag(40, 0, False, 3, 50.0)  # tie at 40 s: partition 0
    assert group_lag_at(s, 80.0) == GroupLag(70, 1, True, 3, 80.0)  # the growing one overtakes
    assert group_lag_at(summarize([]), 9.0) == GroupLag(0, None, False, 0, 9.0)
    assert group_lag_at(summarize([Term(3, None, False, 7.0)]), 9.0) == GroupLag(0, None, False, 1, 7.0)


# ---------------------------------------------------------------- round_seconds


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (0.4, 0),
        (0.5, 1),
        (1.5, 2),
        (2.5, 3),
        (12.4, 12),
        (12.6, 13),
        (0.0, 0),
        (-0.5, 0),
        (-12.0, 0),
        (math.nan, 0),
        (math.inf, MAX_SECONDS),
        (-math.inf, 0),
        (1e300, MAX_SECONDS),
        (MAX_SECONDS - 0.6, MAX_SECONDS - 1),
    ],
)
def test_round_seconds_rounds_half_up(seconds, expected):
    got = round_seconds(seconds)
    assert type(got) is int and got == expected

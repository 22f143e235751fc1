"""lagmon.timelag: interpolation of committed offsets in a head history.

Histories are simulated from message append times, so the true append time of
every message is known: the estimate must lie in the same bracket as the truth.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lagmon.timelag import (
    LagInput,
    anchor_candidates,
    append_time,
    evaluation_time,
)
from tests.histories import T0, histories, lag, offsets_to_probe, sane
from tests.oracles import Bracket, PartitionLag, history_bracket, partition_lag

PROPS = settings(max_examples=150, deadline=None)


# ---------------------------------------------------------------- append_time

points = st.tuples(st.integers(-50, 50), st.floats(0, 1e6, allow_nan=False))


@PROPS
@given(c=st.integers(-20, 20), below=st.lists(points, max_size=6), above=st.lists(points, max_size=6))
def test_append_time_within_bracket_times(c, below, above):
    below = [p for p in below if p[0] <= c]
    above = [p for p in above if p[0] > c]
    if not above:
        with pytest.raises(ValueError):
            append_time(c, below, above)
        return
    t, lower = append_time(c, below, above)
    assert math.isfinite(t)
    b = min(above, key=lambda p: (p[0], p[1]))
    if not below:
        assert (t, lower) == (b[1], True)
        return
    a = max(below, key=lambda p: (p[0], p[1]))
    assert lower is False
    assert min(a[1], b[1]) <= t <= max(a[1], b[1])


def test_append_time_interpolates_linearly():
    # message 15 of 10..19 sits half a message past the line through the two heads
    assert append_time(15, [(10, 100.0)], [(20, 200.0)]) == (155.0, False)
    assert append_time(19, [(10, 100.0)], [(20, 200.0)]) == (195.0, False)
    # an exact match is that point's time
    assert append_time(10, [(10, 100.0)], [(20, 200.0)]) == (100.0, False)
    # ties: A takes the latest time, B the earliest
    assert append_time(10, [(10, 90.0), (10, 100.0), (5, 1.0)], [(11, 130.0), (11, 120.0), (30, 999.0)]) == (
        100.0,
        False,
    )


@PROPS
@given(
    rate=st.floats(0.01, 1000.0),
    phase=st.floats(0.0, 0.999),
    t_a=st.floats(0.0, 1e4),
    gap=st.floats(0.01, 1e4),
    data=st.data(),
)
def test_append_time_of_steady_traffic_is_within_half_a_message(rate, phase, t_a, gap, data):
    """Message k appended at (k + phase) / rate; heads read at t_a and t_a + gap (the head is
    the count of messages appended by then). Every c strictly between is dated within half a
    message's spacing: interpolating c itself (not c + 1/2) is up to a whole spacing early."""
    t_b = t_a + gap

    def head(t: float) -> int:
        return max(0, math.floor(t * rate - phase) + 1)

    h_a, h_b = head(t_a), head(t_b)
    assume(h_b - h_a >= 2)
    c = data.draw(st.integers(h_a + 1, h_b - 1))
    t, lower = append_time(c, [(h_a, t_a)], [(h_b, t_b)])
    assert not lower
    assert abs(t - (c + phase) / rate) <= 0.5 / rate + 1e-6 * max(1.0, t_b)


def test_append_time_ignores_wrong_side_and_nan_candidates():
    t, lower = append_time(
        10, [(10, 100.0), (12, 5.0), (9, math.nan)], [(20, 200.0), (10, 0.0), (15, math.inf)]
    )
    assert (t, lower) == (100.0, False)
    assert append_time(5, [], [(7, 70.0)]) == (70.0, True)
    with pytest.raises(ValueError):
        append_time(5, [(5, 1.0)], [])


def test_append_time_clamps_inconsistent_anchor_times():
    # an anchor (CreateTime from a skewed producer) later than the upper head point
    t, _ = append_time(10, [(10, 500.0)], [(20, 200.0)])
    assert t == 500.0
    t, _ = append_time(15, [(10, 500.0)], [(20, 200.0)])
    assert 200.0 <= t <= 500.0


def test_anchor_candidates():
    assert anchor_candidates(10, [(10, 5.0), None]) == ([(10, 5.0)], [(11, 5.0)])
    assert anchor_candidates(10, [(7, 5.0), (12, 9.0)]) == ([(7, 5.0)], [(13, 9.0)])


# ---------------------------------------------------------------- evaluation time


def test_evaluation_time():
    assert evaluation_time(100.0, 160.0, 1000.0) == 1000.0  # static commit: still static now
    assert evaluation_time(160.0, 160.0, 1000.0) == 160.0  # just advanced: the sample time
    assert evaluation_time(2000.0, 2000.0, 1000.0) == 1000.0  # never later than now


def test_evaluation_time_of_a_commit_overtaken_after_its_latest_sample():
    # overtaken (head first seen above it) after the commit's latest sample: that sample's time
    assert evaluation_time(100.0, 160.0, 1000.0, overtaken_at=160.2) == 160.0
    # already behind when last sampled: extrapolated to now
    assert evaluation_time(100.0, 160.0, 1000.0, overtaken_at=130.0) == 1000.0
    assert evaluation_time(100.0, 160.0, 1000.0, overtaken_at=160.0) == 1000.0
    assert evaluation_time(100.0, 160.0, 1000.0, overtaken_at=None) == 1000.0


def test_burst_past_a_caught_up_consumer_is_not_extrapolated_until_seen_behind():
    # head 100 at samples T0..T0+5; a burst; the sample at T0+10 reads commit 100 (still the
    # caught-up value, seen since T0) and then the head 200 (T0+10.2)
    rows = [(100, T0, T0 + 5), (200, T0 + 10.2, T0 + 10.2)]
    first = lag(rows, 100, T0 + 14, commit_first=T0, commit_last=T0 + 10)
    assert first.at == T0 + 10 and first.seconds == pytest.approx(5)
    # the next sample still reads 100: the consumer was behind and did not move, so it grows
    again = lag(rows + [(200, T0 + 10.2, T0 + 15.2)], 100, T0 + 19, commit_first=T0, commit_last=T0 + 15)
    assert again.at == T0 + 19 and again.seconds == pytest.approx(14)
    # with the burst's timestamp read (an exact anchor at 100, appended at T0+8, before the
    # commit was read at T0+10): the group was already behind at that first sample, so the
    # lag is dated by the message and grows from that sample on, not a sample later
    exact = lag(rows, 100, T0 + 14, anchors=[(100, T0 + 8)], commit_first=T0, commit_last=T0 + 10)
    assert exact.at == T0 + 14 and exact.seconds == pytest.approx(6)
    # a message appended after the commit was read says nothing about the group: held there
    after = lag(rows, 100, T0 + 14, anchors=[(100, T0 + 10.1)], commit_first=T0, commit_last=T0 + 10)
    assert after.at == T0 + 10 and after.seconds == 0


@PROPS
@given(h=histories(), extra=st.floats(0, 86_400), data=st.data())
def test_commit_not_behind_at_its_latest_sample_is_never_extrapolated(h, extra, data):
    """A commit whose latest sample came before any head above it was seen holds its lag at
    that sample, however late `now` is."""
    c = data.draw(st.integers(h.base, max(h.base, h.newest - 1)))
    if c >= h.newest:
        return
    seen_above = min(r[1] for r in h.rows if r[0] > c)
    last = seen_above - data.draw(st.floats(0.001, 10.0))
    p = lag(h.rows, c, h.samples[-1] + extra, commit_first=last - 30.0, commit_last=last)
    sane(p)
    assert p.at == last


def test_static_commit_lag_grows_with_now():
    rows = [(0, T0, T0), (100, T0 + 60, T0 + 60)]
    first = lag(rows, 50, T0 + 1000, commit_first=T0 + 60, commit_last=T0 + 120)
    later = lag(rows, 50, T0 + 5000, commit_first=T0 + 60, commit_last=T0 + 120)
    assert first.seconds == pytest.approx(1000 - 30.3)
    assert later.seconds == pytest.approx(5000 - 30.3)


def test_advanced_commit_is_evaluated_at_its_sample_time():
    rows = [(0, T0, T0), (100, T0 + 60, T0 + 60)]
    p = lag(rows, 50, T0 + 5000, commit_first=T0 + 120, commit_last=T0 + 120)
    assert p.at == T0 + 120
    assert p.seconds == pytest.approx(120 - 30.3)


# ---------------------------------------------------------------- properties on whole histories


@PROPS
@given(h=histories(), extra=st.floats(0, 86_400))
def test_never_negative_nan_and_truth_in_the_same_bracket(h, extra):
    now = h.samples[-1] + extra
    for c in offsets_to_probe(h):
        p = lag(h.rows, c, now)
        sane(p)
        if c >= h.newest:
            # caught up as of the sample that saw it (the helper's commit row is at the last sample)
            assert p.seconds == 0 and not p.lower_bound and p.at <= now
            continue
        assert p.at == now
        b = history_bracket(h.rows, [], c)
        t_star = now - p.seconds
        if c < h.base:
            assert p.lower_bound
            assert p.seconds == pytest.approx(now - h.rows[0][1])  # lower bound: now - oldest
            assert b.oldest_head == (h.rows[0][0], h.rows[0][1])
            continue
        assert not p.lower_bound
        t_a, t_b = b.head_below[1], b.head_above[1]
        assert t_a < h.true_time(c) <= t_b  # the simulation's truth
        assert t_a - 1e-6 <= t_star <= t_b + 1e-6  # the estimate: same bracket


@PROPS
@given(h=histories(), extra=st.floats(0, 86_400), use_anchors=st.booleans(), data=st.data())
def test_monotone_smaller_offset_never_less_lag(h, extra, use_anchors, data):
    anchors = []
    if use_anchors and h.msg_times:
        picks = data.draw(st.lists(st.integers(0, len(h.msg_times) - 1), max_size=5))
        anchors = [(h.base + i, h.msg_times[i]) for i in picks]  # exact message timestamps
    now = h.samples[-1] + extra
    lags = [lag(h.rows, c, now, anchors=anchors).seconds for c in offsets_to_probe(h)]
    for older, newer in zip(lags, lags[1:], strict=False):
        assert older >= newer - 1e-6


@PROPS
@given(h=histories(), extra=st.floats(0, 86_400))
def test_exact_at_snapshot_points(h, extra):
    """c == a row's offset: the head sat at c until last_seen, so message c came after it: t* = last_seen."""
    now = h.samples[-1] + extra
    for offset, _first, last in h.rows[:-1]:
        p = lag(h.rows, offset, now)
        assert p.seconds == now - last
        assert not p.lower_bound


@PROPS
@given(h=histories(), extra=st.floats(0, 86_400), data=st.data())
def test_anchors_give_exact_times(h, extra, data):
    assume(len(h.msg_times) > 0)
    i = data.draw(st.integers(0, len(h.msg_times) - 1))
    c = h.base + i
    assume(c < h.newest)
    now = h.samples[-1] + extra
    p = lag(h.rows, c, now, anchors=[(c, h.msg_times[i])])
    assert p.seconds == pytest.approx(max(0.0, now - h.msg_times[i]), abs=1e-6)
    assert not p.lower_bound


@PROPS
@given(h=histories(), extra=st.floats(0, 86_400), data=st.data())
def test_anchor_between_commit_and_history_is_a_tighter_lower_bound(h, extra, data):
    """c below the oldest row, an anchor between c and the oldest row: B is the anchor, still a lower bound."""
    assume(h.base >= 2)
    o = data.draw(st.integers(1, h.base - 1))
    c = data.draw(st.integers(0, o - 1))
    ts = T0 - data.draw(st.floats(0, 1e6))  # message o was appended before the first sample
    now = h.samples[-1] + extra
    p = lag(h.rows, c, now, anchors=[(o, ts)])
    assert p.lower_bound
    assert p.seconds == now - ts
    q = lag(h.rows, c, now)  # without the anchor: now - oldest first_seen
    assert q.lower_bound and q.seconds == now - h.rows[0][1] <= p.seconds


# ---------------------------------------------------------------- named examples


def test_flat_run_uses_its_latest_time():
    """Idle topic for 10 h, then one message: a consumer one message behind lags ~1 interval."""
    idle_until = T0 + 36_000
    rows = [(500, T0, idle_until), (501, idle_until + 60, idle_until + 60)]
    p = lag(rows, 500, idle_until + 60)
    assert p.seconds == pytest.approx(60)  # not 10 hours
    assert not p.lower_bound


def test_live_head_is_the_newest_point():
    rows = [(100, T0, T0 + 60), (150, T0 + 120, T0 + 120)]
    now = T0 + 120
    assert lag(rows, 120, now).seconds == pytest.approx(now - (T0 + 60 + 20.5 / 50 * 60))
    assert lag(rows, 150, now).seconds == 0
    assert lag(rows, 170, now).seconds == 0  # c > h: clamp, never negative


def test_below_the_oldest_snapshot_is_a_lower_bound():
    rows = [(1000, T0, T0 + 30), (2000, T0 + 60, T0 + 60)]
    p = lag(rows, 10, T0 + 600)
    assert p.lower_bound and p.seconds == 600.0


def test_no_head_known_is_caught_up_and_negative_commit_is_none():
    inp = LagInput(
        group_id="g",
        topic="t",
        partition=3,
        committed=5,
        commit_first_seen=T0,
        commit_last_seen=T0,
        head_below=None,
        head_above=None,
        anchor_below=None,
        anchor_above=None,
        newest_head=None,
        oldest_head=None,
    )
    assert partition_lag(inp, T0 + 10) == PartitionLag(3, 0.0, False, T0)
    assert partition_lag(inp._replace(committed=-1), T0 + 10) is None


def test_missing_upper_point_is_treated_as_caught_up():
    inp = LagInput(
        group_id="g",
        topic="t",
        partition=0,
        committed=5,
        commit_first_seen=T0,
        commit_last_seen=T0 + 5,
        head_below=(5, T0),
        head_above=None,
        anchor_below=None,
        anchor_above=None,
        newest_head=9,
        oldest_head=(5, T0),
    )
    assert partition_lag(inp, T0 + 10).seconds == 0


def test_history_bracket_fields_match_store_lag_input():
    rows = [(10, 1.0, 2.0), (20, 3.0, 4.0), (30, 5.0, 6.0)]
    b = history_bracket(rows, [(12, 2.5), (20, 3.5), (25, 4.5)], 20)
    assert b == Bracket(
        head_below=(20, 4.0),
        head_above=(30, 5.0),
        anchor_below=(20, 3.5),
        anchor_above=(20, 3.5),
        newest_head=30,
        oldest_head=(10, 1.0),
        head_below_since=3.0,
    )
    assert history_bracket([], [], 5) == Bracket(None, None, None, None, None, None)
    assert history_bracket(rows, [], 5).head_below is None
    assert history_bracket(rows, [], 35).head_above is None


@PROPS
@given(
    h=histories(max_samples=12),
    anchors=st.lists(st.tuples(st.integers(0, 10_300), st.floats(0, 1e10)), max_size=6),
    c=st.integers(0, 10_300),
)
def test_history_bracket_matches_brute_force(h, anchors, c):
    b = history_bracket(h.rows, anchors, c)
    low = [r for r in h.rows if r[0] <= c]
    high = [r for r in h.rows if r[0] > c]
    assert b.head_below == (max(((r[0], r[2]) for r in low), default=None))
    assert b.head_below_since == (max(low, key=lambda r: (r[0], r[2]))[1] if low else None)
    assert b.head_above == (min(((r[0], r[1]) for r in high), default=None))
    a_low = [a for a in anchors if a[0] <= c]
    a_high = [a for a in anchors if a[0] >= c]
    assert b.anchor_below == max(a_low, default=None)
    assert b.anchor_above == min(a_high, default=None)

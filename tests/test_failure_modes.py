"""One case per math-related row of "Known failure modes" in shared/reference/time-lag.md.

Rows not about the math and therefore tested elsewhere: ghost groups (Burrow#797, store purge)
and scrape timeouts (KE#9 #336 #377, kafka client concurrency).
"""

from __future__ import annotations

import math
import os
import tempfile

import pytest

from lagmon.states import State, Thresholds, initial, step
from lagmon.store import Store
from lagmon.thinning import keep_indexes
from lagmon.timelag import GroupLag, append_time, group_lags
from tests.oracles import PartitionLag, group_lag, partition_lag

T0 = 1_700_000_000.0
HOUR, DAY, YEAR = 3600.0, 86_400.0, 365 * 86_400.0


from tests.helpers import lag, lag_input  # noqa: E402


def case_negative_lag_clamped():
    # committed fetched after the heads: c > h. Never negative, no lower bound, worst partition null.
    rows = [(100, T0, T0), (200, T0 + 60, T0 + 60)]
    p = lag(rows, 205, T0 + 61)
    assert p.seconds == 0 and not p.lower_bound
    g = group_lag([p, lag(rows, 200, T0 + 61, partition=1)], T0 + 61)
    assert (g.seconds, g.worst_partition) == (0, None)


def case_no_extrapolation_below_oldest():
    # head moved 1 message in an hour; c a million messages below: a line would say ~114 years
    rows = [(5_000_000, T0, T0), (5_000_001, T0 + HOUR, T0 + HOUR)]
    now = T0 + HOUR + 60
    p = lag(rows, 4_000_000, now)
    assert p.lower_bound
    assert p.seconds == now - T0  # lower bound now - t_oldest, not years
    assert p.seconds < YEAR
    # an exact anchor (the message's own timestamp) replaces the bound with the truth
    q = lag(rows, 4_000_000, now, anchors=[(4_000_000, T0 - 3 * DAY)])
    assert not q.lower_bound and q.seconds == now - (T0 - 3 * DAY)


def case_flat_only_history_dy_zero():
    # the head never moved: one row, first_seen < last_seen; no division by zero anywhere
    rows = [(42, T0, T0 + 3 * DAY)]
    now = T0 + 3 * DAY
    assert lag(rows, 42, now).seconds == 0  # at the head: caught up
    p = lag(rows, 41, now)
    assert p.lower_bound and p.seconds == now - T0  # appended before the history began
    with pytest.raises(ValueError):
        append_time(42, [(42, 5.0)], [(42, 9.0)])  # no point above c: the caller treats it as caught up
    t, lower = append_time(42, [(42, 5.0), (42, 7.0)], [(43, 7.0), (43, 9.0)])
    assert (t, lower) == (7.0, False) and math.isfinite(t)


def case_plateau_at_history_span():
    # 2 days of 30 s samples, thinned to 60 rows: an offline group's lag is not capped at 60 x 30 s
    rows = [(1000 + 10 * i, T0 + 30.0 * i, T0 + 30.0 * i) for i in range(int(2 * DAY / 30))]
    now = rows[-1][2] + 30
    thin = [rows[i] for i in sorted(keep_indexes(rows, 60, now=now))]
    assert len(thin) <= 60 and thin[0] == rows[0]
    c = rows[3][0] + 5
    full, thinned = lag(rows, c, now), lag(thin, c, now)
    assert thinned.seconds > 30 * 60 * 10  # far beyond a 30-minute window
    assert thinned.seconds == pytest.approx(full.seconds, rel=0.05)
    # below what is kept, an anchor covers what fell off the end
    assert lag(thin, 500, now, anchors=[(500, T0 - DAY)]).seconds == now - (T0 - DAY)


def _store_lag(store: Store, now: float, key=("g", "t")) -> GroupLag:
    """The lag of group g on topic t as a stage computes it: from what the store holds."""
    return group_lags(store.lag_inputs([key]), now, [key])[key]


def case_restart_keeps_history():
    # the history is in the database: a restarted stage reopens the same file and computes
    # the same lag as before; and a history that did restart empty yields a small lower
    # bound, not a spike
    now = T0 + 1300
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "state.db")
        with Store(path) as store:
            for offset, at in ((0, T0), (600, T0 + 600), (1200, T0 + 1200)):
                store.record_heads({("t", 0): offset}, at)
            for at in (T0 + 1140, T0 + 1200):  # the same commit at two samples
                store.record_commits({("g", "t", 0): 300}, at)
            before = _store_lag(store, now)
        with Store(path, create=False) as reopened:
            after = _store_lag(reopened, now)
    assert before.partitions == 1 and not before.lower_bound
    assert before.seconds == pytest.approx(now - (T0 + 300), abs=1)  # interpolated, not a bound
    assert after == before
    rows = [(0, T0, T0), (600, T0 + 600, T0 + 600), (1200, T0 + 1200, T0 + 1200)]
    assert lag(rows, 300, now).seconds == pytest.approx(after.seconds, abs=1)
    fresh = [(1200, T0 + 1200, T0 + 1260)]
    p = lag(fresh, 300, now)
    assert p.lower_bound and p.seconds == now - (T0 + 1200)


def case_topic_recreated_history_afresh():
    # the store resets the partition when the head goes down; the fresh history gives sane lags
    reset_at = T0 + 30 * DAY
    fresh = [
        (0, reset_at, reset_at),
        (10, reset_at + 60, reset_at + 60),
        (20, reset_at + 120, reset_at + 180),
    ]
    now = reset_at + 200
    assert lag(fresh, 500, now).seconds == 0  # an old commit beyond the new head: clamped
    p = lag(fresh, 5, now)
    # message 5 of 10 between heads 0 and 10, 60 s apart: 5.5 / 10 of the way (half a message on)
    assert not p.lower_bound and p.seconds == pytest.approx(now - (reset_at + 33))
    assert p.seconds <= now - reset_at  # never older than the new topic
    # through the real store: the old topic's history (up to offset 1000, a month old) is dropped
    # when the head goes down, so a commit on the new topic is not dated by the old one's rows
    with tempfile.TemporaryDirectory() as d, Store(os.path.join(d, "state.db")) as store:
        assert store.record_heads({("t", 0): 0}, T0) == []
        assert store.record_heads({("t", 0): 1000}, T0 + DAY) == []
        assert store.record_heads({("t", 0): 0}, reset_at) == [("t", 0)]
        for offset, at in ((10, reset_at + 60), (20, reset_at + 120), (20, reset_at + 180)):
            assert store.record_heads({("t", 0): offset}, at) == []
        for at in (reset_at + 120, reset_at + 180):  # the same commit at two samples
            store.record_commits({("g", "t", 0): 5}, at)
        g = _store_lag(store, now)
    assert g.partitions == 1 and not g.lower_bound
    assert g.seconds == pytest.approx(now - (reset_at + 33), abs=1)
    assert g.seconds <= now - reset_at


def case_no_commit_not_counted():
    p = lag_input([(10, T0, T0), (20, T0 + 60, T0 + 60)], -1)
    assert partition_lag(p, T0 + 60) is None  # -1 (no commit) is not "offset 0"
    g = group_lag([partition_lag(p, T0 + 60)], T0 + 60)
    assert (g.seconds, g.partitions, g.worst_partition) == (0, 0, None)


def case_nan_never_leaks():
    rows = [(10, T0, T0), (20, T0 + 60, T0 + 60)]
    p = lag(rows, 15, T0 + 100, anchors=[(15, math.nan)])
    assert math.isfinite(p.seconds) and p.seconds == pytest.approx(100 - 60 * 5.5 / 10)
    q = partition_lag(lag_input(rows, 15)._replace(head_below=(10, math.inf)), T0 + 100)
    assert math.isfinite(q.seconds) and q.seconds >= 0
    g = group_lag([PartitionLag(0, math.nan, False, T0), PartitionLag(1, 12.6, False, T0)], T0)
    assert g.seconds == 13 and isinstance(g.seconds, int) and g.worst_partition == 1
    g = group_lag([PartitionLag(0, math.nan, True, T0)], T0)
    assert g.seconds == 0 and isinstance(g.seconds, int)


def case_resolution_beyond_poll_interval():
    # 60 s samples, true lag 0.2 s: without a timestamp the bracket spans the interval,
    # with the message's timestamp (anchor) the lag is exact
    rows = [(1000, T0, T0), (1600, T0 + 60, T0 + 60)]
    now = T0 + 60
    c, truth = 1599, now - 0.2
    assert lag(rows, c, now, anchors=[(c, truth)]).seconds == pytest.approx(0.2)
    rough = lag(rows, c, now).seconds
    assert 0 <= rough <= 60


def case_stopped_groups_stay_with_growing_lag():
    t = Thresholds(offline_samples=5, online_lag_threshold=600, recovering_min_duration=900)
    rows = [(0, T0, T0), (6000, T0 + 600, T0 + 600)]
    commit_first = T0 + 300
    s, lags, now = initial(T0 + 300), [], T0 + 300
    for _i in range(30):
        now += 60 if s.state is State.ONLINE else 1800
        p = lag(rows, 3000, now, commit_first=commit_first, commit_last=now)  # same offset every sample
        s = step(s, advanced=False, lag_seconds=p.seconds, now=now, t=t)
        lags.append(p.seconds)
    assert s.state is State.OFFLINE
    assert lags == sorted(lags) and lags[-1] > 12 * HOUR  # still reported, lag keeps growing


def case_bounded_history_memory():
    rows = [(i * 3, T0 + 10.0 * i, T0 + 10.0 * i) for i in range(100_000)]
    kept = keep_indexes(rows, 300)
    assert len(kept) <= 300 and 0 in kept and len(rows) - 1 in kept


CASES = [
    pytest.param(
        case_negative_lag_clamped,
        id="KE#76,KE#169,KE#191,KE#262,KE#287,KE#437,Burrow#20,KLE#138:negative-lag-c>h-clamped-to-0",
    ),
    pytest.param(
        case_no_extrapolation_below_oldest, id="KLE#175,KLE#496:no-extrapolation-below-oldest-lower-bound"
    ),
    pytest.param(case_flat_only_history_dy_zero, id="KLE-spec-dy==0:flat-only-history"),
    pytest.param(case_plateau_at_history_span, id="themoah/klag#30:no-plateau-at-history-span"),
    pytest.param(case_restart_keeps_history, id="KLE-PR#333,Burrow#740:restart-same-lag-no-spike"),
    pytest.param(case_topic_recreated_history_afresh, id="KLE#197:topic-recreated-fresh-history-sane"),
    pytest.param(case_no_commit_not_counted, id="KLE#37,KLE#45:no-commit-not-counted"),
    pytest.param(case_nan_never_leaks, id="KLE#125,KLE#404:never-NaN-int-seconds"),
    pytest.param(case_resolution_beyond_poll_interval, id="KLE#353:anchor-beats-poll-interval-resolution"),
    pytest.param(
        case_stopped_groups_stay_with_growing_lag, id="KLE#36,KLE#63,KLE#66,KLE#290:offline-stays-lag-grows"
    ),
    pytest.param(case_bounded_history_memory, id="KE#385,DD-PR#23301:bounded-history"),
]


@pytest.mark.parametrize("check", CASES)
def test_known_failure_mode(check):
    check()

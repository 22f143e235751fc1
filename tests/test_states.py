"""lagmon.states: the ONLINE / OFFLINE / RECOVERING machine (rules in the lagmon.states docstring)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lagmon.states import (
    GroupState,
    State,
    Thresholds,
    initial,
    resolution,
    sample_interval,
    step,
    transitioned,
)

ON, OFF, REC = State.ONLINE, State.OFFLINE, State.RECOVERING
T = Thresholds(offline_samples=3, online_lag_threshold=600, recovering_min_duration=900)


# ---------------------------------------------------------------- example table


def run(start: GroupState, samples, t=T) -> GroupState:
    """samples: (advanced, lag, now) tuples fed in order."""
    s = start
    for advanced, lag, now in samples:
        s = step(s, advanced=advanced, lag_seconds=lag, now=now, t=t)
    return s


CASES = [
    # id, start, samples, expected state, expected since, expected static_samples, reason contains
    ("online-static-below-N-stays", GroupState(ON, 0.0), [(False, 50, 60), (False, 50, 120)], ON, 0.0, 2, ""),
    (
        "online-static-N-goes-offline",
        GroupState(ON, 0.0),
        [(False, 734, 60), (False, 734, 120), (False, 734, 180)],
        OFF,
        180,
        3,
        "offsets static for 3 samples with lag 734s",
    ),
    ("online-advance-resets-count", GroupState(ON, 0.0, 2), [(True, 50, 60)], ON, 0.0, 0, ""),
    (
        "online-caught-up-is-never-static",
        GroupState(ON, 0.0, 2),
        [(False, 0, 60), (False, 0, 120), (False, 0, 180)],
        ON,
        0.0,
        0,
        "",
    ),
    ("online-high-lag-advancing-stays-online", GroupState(ON, 0.0), [(True, 5000, 60)], ON, 0.0, 0, ""),
    ("offline-static-stays", GroupState(OFF, 0.0, 3), [(False, 900, 1800)], OFF, 0.0, 4, ""),
    (
        "offline-advanced-high-lag-recovering",
        GroupState(OFF, 0.0, 3),
        [(True, 600, 1800)],
        REC,
        1800,
        0,
        "offsets advancing again with lag 600s >= 600s threshold",
    ),
    (
        "offline-advanced-low-lag-online",
        GroupState(OFF, 0.0, 3),
        [(True, 599, 1800)],
        ON,
        1800,
        0,
        "offsets advancing with lag 599s < 600s threshold",
    ),
    ("offline-caught-up-online", GroupState(OFF, 0.0, 3), [(False, 0, 1800)], ON, 1800, 0, "caught up"),
    ("recovering-low-lag-too-early-stays", GroupState(REC, 0.0), [(True, 10, 899)], REC, 0.0, 0, ""),
    (
        "recovering-low-lag-after-min-duration-online",
        GroupState(REC, 0.0),
        [(True, 10, 900)],
        ON,
        900,
        0,
        "lag 10s < 600s threshold after 900s recovering",
    ),
    (
        "recovering-caught-up-after-min-duration-online",
        GroupState(REC, 0.0),
        [(False, 0, 1000)],
        ON,
        1000,
        0,
        "caught up",
    ),
    ("recovering-high-lag-stays", GroupState(REC, 0.0), [(True, 700, 5000)], REC, 0.0, 0, ""),
    (
        "recovering-static-N-offline",
        GroupState(REC, 0.0),
        [(False, 700, 1800), (False, 700, 3600), (False, 700, 5400)],
        OFF,
        5400,
        3,
        "static for 3 samples",
    ),
    (
        "recovering-static-N-wins-over-low-lag",
        GroupState(REC, 0.0, 2),
        [(False, 10, 5400)],
        OFF,
        5400,
        3,
        "static",
    ),
]


@pytest.mark.parametrize(
    "start,samples,state,since,count,reason", [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_named_transitions(start, samples, state, since, count, reason):
    got = run(start, samples)
    assert got.state is state
    assert got.since == since
    assert got.static_samples == count
    assert reason in got.reason
    if got.since != start.since:
        assert got.reason  # every transition explains itself


def test_threshold_zero_can_still_leave_recovering():
    t = Thresholds(offline_samples=5, online_lag_threshold=0, recovering_min_duration=60)
    s = step(GroupState(OFF, 0.0), advanced=True, lag_seconds=5, now=10, t=t)
    assert s.state is REC  # lag 5 >= threshold 0
    s = step(s, advanced=True, lag_seconds=0, now=100, t=t)
    assert s.state is ON and "caught up" in s.reason  # only caught up is "below" a zero threshold


def test_initial_and_helpers():
    s = initial(123.0)
    assert s == GroupState(ON, 123.0, 0, "first seen")
    assert not transitioned(s, s)
    assert transitioned(s, GroupState(OFF, 124.0))
    assert sample_interval(ON, 60, 1800) == 60
    assert sample_interval("offline", 60, 1800) == 1800
    assert sample_interval(REC, 60, 1800) == 1800
    assert resolution(ON) == "fine" and resolution(OFF) == "coarse" and resolution("recovering") == "coarse"
    assert State("online") is ON and ON == "online"


def test_thresholds_from_monitoring():
    keys = dict(
        offline_detection_consecutive_samples=5,
        online_lag_threshold_seconds=600,
        recovering_minimum_duration_seconds=900,
    )
    want = Thresholds(5, 600.0, 900.0)
    assert Thresholds.from_monitoring(SimpleNamespace(**keys, sample_interval_seconds=60)) == want
    assert Thresholds.from_monitoring(keys) == want


# ---------------------------------------------------------------- stateful property test


class Model:
    """The rules of the lagmon.states docstring written out independently, state names as plain strings."""

    def __init__(self, t: Thresholds, now: float):
        self.t, self.state, self.since, self.count = t, "online", now, 0

    def feed(self, advanced: bool, lag: float, now: float) -> None:
        static = lag > 0 and not advanced
        self.count = self.count + 1 if static else 0
        n, thr = self.t.offline_samples, self.t.online_lag_threshold
        low = lag == 0 or lag < thr
        table = {
            "online": "offline" if self.count >= n else "online",
            "offline": (
                "online" if lag == 0 else ("online" if lag < thr else "recovering") if advanced else "offline"
            ),
            "recovering": (
                "offline"
                if self.count >= n
                else "online"
                if low and now - self.since >= self.t.recovering_min_duration
                else "recovering"
            ),
        }
        nxt = table[self.state]
        if nxt != self.state:
            self.state, self.since = nxt, now


LAGS = st.one_of(
    st.just(0.0), st.floats(0.001, 100.0), st.floats(100.0, 2000.0), st.sampled_from([599.0, 600.0])
)


class StateMachineTest(RuleBasedStateMachine):
    @initialize(
        n=st.integers(1, 6),
        thr=st.sampled_from([0.0, 60.0, 600.0]),
        dur=st.sampled_from([0.0, 300.0, 900.0]),
        start=st.floats(1.6e9, 1.8e9),
    )
    def setup(self, n, thr, dur, start):
        self.t = Thresholds(n, thr, dur)
        self.now = start
        self.s = initial(start)
        self.model = Model(self.t, start)

    def _feed(self, advanced: bool, lag: float, dt: float) -> None:
        self.now += dt
        prev = self.s
        new = step(prev, advanced=advanced, lag_seconds=lag, now=self.now, t=self.t)
        self.model.feed(advanced, lag, self.now)
        assert new.state.value == self.model.state
        assert new.since == self.model.since
        assert new.static_samples == self.model.count
        # since (and reason) change exactly on transitions
        if transitioned(prev, new):
            assert new.since == self.now and new.reason and new.reason != "first seen"
        else:
            assert (new.since, new.reason) == (prev.since, prev.reason)
        if prev.state is REC and new.state is ON:
            assert self.now - prev.since >= self.t.recovering_min_duration
        if prev.state is ON and lag == 0:
            assert new.state is ON  # caught-up groups stay ONLINE
        if prev.state is OFF and new.state is not OFF:
            assert advanced or lag == 0  # OFFLINE is left only on progress
        self.s = new

    @rule(advanced=st.booleans(), lag=LAGS, dt=st.floats(1.0, 2000.0))
    def sample(self, advanced, lag, dt):
        self._feed(advanced, lag, dt)

    @rule(lag=st.floats(1.0, 5000.0), dt=st.floats(1.0, 120.0), k=st.integers(1, 8))
    def stall(self, lag, dt, k):
        for _ in range(k):
            self._feed(False, lag, dt)

    @precondition(lambda self: self.s.state is not ON)
    @rule(lag=LAGS, dt=st.floats(1.0, 2000.0))
    def resume(self, lag, dt):
        self._feed(True, lag, dt)

    @invariant()
    def online_count_below_n(self):
        if self.s.state is ON:
            assert self.s.static_samples < self.t.offline_samples

    @invariant()
    def since_not_in_future(self):
        assert self.s.since <= self.now

    @invariant()
    def sampling_follows_state(self):
        assert sample_interval(self.s.state, 60, 1800) == (60 if self.s.state is ON else 1800)
        assert resolution(self.s.state) == ("fine" if self.s.state is ON else "coarse")


StateMachineTest.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestStateMachine = StateMachineTest.TestCase

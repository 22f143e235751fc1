"""The sampler's schedule and the reporter's loop (issue 12; issue 11 items 4, 8, 10), with
the scripted Kafka stand-in of test_sampling and a REAL store on a temp file."""

from __future__ import annotations

import json

import pytest

from lagmon.stages.reporter import POLL_SECONDS, Reporter
from lagmon.stages.sampler import Sampler
from lagmon.store import Store
from tests.helpers import Clock, make_config
from tests.test_sampling import MONITORING, ScriptedKafka, sampler_at

INTERVAL = MONITORING["sample_interval_seconds"]  # 10
OFFLINE = MONITORING["offline_sample_interval_seconds"]  # 100


@pytest.fixture
def env(tmp_path):
    cfg = make_config(tmp_path, monitoring=MONITORING, exclude={"topics": ["audit"]})
    store = Store(cfg.database.path)
    kafka = ScriptedKafka()
    yield cfg, store, kafka
    store.close()


sampler = sampler_at  # a Sampler whose wall clock follows the step times


def run_for(s, start: float, seconds: float, max_steps: int = 10_000) -> int:
    """Steps over simulated time as the runtime does (next step `delay` after this one's start)."""
    t, steps = start, 0
    while t < start + seconds and steps < max_steps:
        t += s.step(t)
        steps += 1
    return steps


# ------------------------------------------------------------------ issue 11 item 4: no spin


class FailingKafka(ScriptedKafka):
    """One group's offset fetch always fails (an ACL denial)."""

    def committed(self, groups, *, deadline=None):
        answered, errors = super().committed(groups, deadline=deadline)
        answered.pop("denied", None)
        return answered, {**errors, "denied": "GROUP_AUTHORIZATION_FAILED"}


@pytest.mark.parametrize("fault", ["excluded topic", "deleted offsets", "failing fetch"])
def test_no_input_makes_the_sampler_loop_faster_than_its_interval(tmp_path, fault):
    cfg = make_config(
        tmp_path, monitoring=MONITORING, exclude={"topics": ["audit"] if fault == "excluded topic" else []}
    )
    store = Store(cfg.database.path)
    kafka = FailingKafka()
    kafka.topic_partitions["audit"] = 1
    kafka.head.update({("audit", 0): 50})
    kafka.listed = {"g1", "denied"}
    kafka.commits = {"g1": {("orders", 0): 0, ("audit", 0): 10}, "denied": {("orders", 0): 0}}
    (tmp_path / "before").mkdir()
    cfg_before = make_config(tmp_path / "before", monitoring=MONITORING)
    s = sampler(cfg_before, store, kafka)  # everything sampled once, "denied" too
    good = FailingKafka.committed
    if fault == "failing fetch":
        FailingKafka.committed = ScriptedKafka.committed  # type: ignore[method-assign]
    try:
        s.step(1000.0)
    finally:
        FailingKafka.committed = good  # type: ignore[method-assign]
    assert ("g1", "audit") in store.group_statuses()
    s = sampler(cfg, store, kafka)
    if fault == "deleted offsets":
        del kafka.commits["g1"][("audit", 0)]
    steps = run_for(s, 1010.0, 10 * OFFLINE)
    assert steps <= 10 * OFFLINE / INTERVAL + 1, f"{steps} steps in {10 * OFFLINE} s with a {fault}"
    store.close()


def test_next_delay_is_never_below_the_interval_even_with_past_due_statuses(env):
    cfg, store, kafka = env
    s = sampler(cfg, store, kafka)
    s.step(1000.0)
    status = store.group_statuses()[("g1", "orders")]
    store.save_group_status([status.__class__(**{**status.__dict__, "next_sample": 0.0})])
    assert s.step(1001.0) >= min(INTERVAL, 1.0)


# ------------------------------------------------------------------ issue 11 item 8: clock steps


def test_a_wall_clock_step_back_costs_at_most_one_interval(env):
    cfg, store, kafka = env
    kafka.listed = {"g1", "stuck"}
    kafka.head = {("orders", 0): 100, ("orders", 1): 100}
    kafka.commits = {"g1": {("orders", 0): 100, ("orders", 1): 100}, "stuck": {("orders", 0): 10}}
    s = sampler(cfg, store, kafka)
    t = 1000.0
    for _ in range(4):  # "stuck" static -> OFFLINE
        kafka.head = {tp: h + 10 for tp, h in kafka.head.items()}
        kafka.commits["g1"] = dict(kafka.head)
        s.step(t)
        t += INTERVAL
    assert store.group_statuses()[("stuck", "orders")].state == "offline"
    offline_at = store.group_statuses()[("stuck", "orders")].last_sampled
    t -= 600  # the wall clock steps back 10 minutes
    sampled_g1, sampled_stuck = [], []
    for _ in range(int(OFFLINE / INTERVAL) + 2):
        kafka.head = {tp: h + 10 for tp, h in kafka.head.items()}
        kafka.commits["g1"] = dict(kafka.head)
        s.step(t)
        statuses = store.group_statuses()
        sampled_g1.append(statuses[("g1", "orders")].last_sampled >= t)
        sampled_stuck.append(statuses[("stuck", "orders")].last_sampled != offline_at)
        t += INTERVAL
    assert all(sampled_g1), "the ONLINE group was not sampled at every sample after the step back"
    # the OFFLINE group still gets its coarse sample on time (one offline interval), not 600 s late
    assert any(sampled_stuck), "the OFFLINE group was not sampled within its offline interval"


def test_a_next_sample_loaded_far_in_the_future_is_clamped_to_one_interval(env):
    cfg, store, kafka = env
    kafka.head = {("orders", 0): 100, ("orders", 1): 100}
    kafka.commits = {"g1": {("orders", 0): 10}}
    s = sampler(cfg, store, kafka)
    for t in (1000.0, 1010.0, 1020.0):
        kafka.head = {tp: h + 10 for tp, h in kafka.head.items()}
        s.step(t)
    status = store.group_statuses()[("g1", "orders")]
    assert status.state == "offline"
    # written by a sampler whose wall clock ran 10 minutes ahead
    store.save_group_status([status.__class__(**{**status.__dict__, "next_sample": 1020.0 + 600 + OFFLINE})])
    s = sampler(cfg, store, kafka)  # a restart loads it
    s.step(1030.0)  # the first step after a restart samples everything once
    first = store.group_statuses()[("g1", "orders")].last_sampled
    s.step(1030.0 + OFFLINE)
    assert store.group_statuses()[("g1", "orders")].last_sampled > first


# ------------------------------------------------------------------ fine detection while OFFLINE


def make_offline(s, kafka, store, start=1000.0) -> float:
    kafka.head = {("orders", 0): 100, ("orders", 1): 100}
    kafka.commits = {"g1": {("orders", 0): 10, ("orders", 1): 100}}
    t = start
    for _ in range(4):
        kafka.head = {tp: h + 10 for tp, h in kafka.head.items()}
        s.step(t)
        t += INTERVAL
    assert store.group_statuses()[("g1", "orders")].state == "offline"
    return t


def test_a_known_offline_groups_new_topic_is_picked_up_at_the_fine_interval(env):
    cfg, store, kafka = env
    s = sampler(cfg, store, kafka)
    t = make_offline(s, kafka, store)
    kafka.topic_partitions["payments"] = 1
    kafka.head[("payments", 0)] = 40
    kafka.commits["g1"][("payments", 0)] = 40
    s.step(t)
    assert ("g1", "payments") in store.group_statuses()


def test_a_group_that_resumes_while_offline_is_seen_within_one_fine_interval(env):
    cfg, store, kafka = env
    s = sampler(cfg, store, kafka)
    t = make_offline(s, kafka, store)
    s.step(t)  # still static: not stored nor evaluated (coarse)
    kafka.commits["g1"] = dict(kafka.head)  # caught up at once
    s.step(t + INTERVAL)
    status = store.group_statuses()[("g1", "orders")]
    assert status.state == "online" and status.lag_seconds == 0


# ------------------------------------------------------------------ issue 11 item 10


def test_the_lag_is_evaluated_when_the_data_was_fetched_not_at_the_step_start(env):
    cfg, store, kafka = env
    kafka.head = {("orders", 0): 100, ("orders", 1): 0}
    kafka.commits = {"g1": {("orders", 0): 50}}
    kafka.times[("orders", 0, 50)] = (50, 900.0)
    clock = Clock()
    s = Sampler(cfg, store, kafka, clock=clock)
    for now in (1000.0, 1010.0):
        clock.t = now + 3.0  # the listing took 3 s: the commits and heads were read at now + 3
        s.step(now)
    status = store.group_statuses()[("g1", "orders")]
    assert status.lag_seconds == round(1013.0 - 900.0)


# ------------------------------------------------------------------ the report follows the sample


def test_the_report_follows_the_sample_and_still_comes_every_report_interval(env, tmp_path):
    cfg, store, kafka = env
    mono = Clock(50.0)
    reporter = Reporter(cfg, store, clock=mono)
    written = []
    write = reporter.write
    reporter.write = lambda now: written.append(now) or write(now)  # type: ignore[method-assign]
    report_interval = cfg.monitoring.report_interval_seconds
    assert reporter.step(1000.0) <= POLL_SECONDS and written == [1000.0]
    mono.t += POLL_SECONDS
    assert reporter.step(1000.25) <= POLL_SECONDS and written == [1000.0]  # nothing new
    s = sampler(cfg, store, kafka)
    s.step(1000.3)
    store.heartbeat("sampler", pid=1, started_at=990.0, at=1000.4, interval=INTERVAL, success=True)
    mono.t += POLL_SECONDS
    reporter.step(1000.5)
    assert written == [1000.0, 1000.5], "a landed sample was not reported at the next poll"
    report = json.loads(open(cfg.output.json_path).read())
    assert [c["group_id"] for c in report["consumers"]] == ["g1"]
    mono.t += report_interval  # no sample, but the report interval passed
    reporter.step(1000.5 + report_interval)
    assert len(written) == 3


def reporter_of_a_growing_lag(env):
    """A Reporter (on a Clock) over one group whose static commit is behind: its lag grows with
    time. Returns (reporter, clock, writes): each write appends lag.json's (now, consumer entry)."""
    cfg, store, kafka = env
    kafka.head = {("orders", 0): 100, ("orders", 1): 0}
    kafka.commits = {"g1": {("orders", 0): 50}}
    s = sampler(cfg, store, kafka)
    for now in (1000.0, 1010.0):  # static and behind: its lag grows with time
        kafka.head = {("orders", 0): kafka.head[("orders", 0)] + 10, ("orders", 1): 0}
        s.step(now)
    mono = Clock(50.0)
    reporter = Reporter(cfg, store, clock=mono)
    writes: list[tuple[float, dict]] = []
    write = reporter.write

    def recorded(now):
        write(now)
        writes.append((now, json.loads(open(cfg.output.json_path).read())["consumers"][0]))

    reporter.write = recorded  # type: ignore[method-assign]
    return reporter, mono, writes


def test_the_report_is_rewritten_every_second_while_a_lag_grows(env):
    reporter, mono, writes = reporter_of_a_growing_lag(env)
    now = 1010.5
    for _ in range(12):  # 3 s of polls, no new sample, report interval far away
        reporter.step(now)
        mono.t += POLL_SECONDS
        now += POLL_SECONDS
    assert env[0].monitoring.report_interval_seconds > 3
    lags = [c["lag_seconds"] for _, c in writes]
    assert len(lags) == 3 and lags[0] < lags[1] < lags[2], lags


def test_a_growing_lag_is_rewritten_as_its_whole_seconds_change(env):
    """While a lag grows, each report comes as the exact lag reaches k + 0.5, so lag_seconds is
    the truth rounded whenever it is read (not up to a second behind it)."""
    reporter, mono, recorded = reporter_of_a_growing_lag(env)
    now = 1010.37
    for _ in range(60):  # as the runtime does: the next step when this one says
        delay = reporter.step(now)
        assert 0.0 <= delay <= POLL_SECONDS
        mono.t += delay
        now += delay
    writes = [(at, c["lag_seconds"], c["lag_seconds_exact"]) for at, c in recorded]
    t_star = writes[0][0] - writes[0][2]
    assert len(writes) >= 5
    for at, lag, exact in writes[1:]:
        assert exact == pytest.approx(at - t_star, abs=0.002)
        assert exact - (lag - 0.5) == pytest.approx(0.0, abs=0.002), (at, lag, exact)  # just crossed
    lags = [w[1] for w in writes]
    assert lags == list(range(lags[0], lags[0] + len(lags))), lags


class SilentKafka(ScriptedKafka):
    """Every listed group's offset fetch fails (an ACL denial on all of them)."""

    def committed(self, groups, *, deadline=None):
        return {}, {g: "GROUP_AUTHORIZATION_FAILED" for g in groups}


def test_a_sample_in_which_no_listed_group_answers_is_not_healthy(env):
    """Issue 11 item 8: a sampler that samples nothing while groups are listed must say so
    (its step fails: the runtime logs it once, stores it as last_error, lag.json goes stale)."""
    from lagmon.kafka import KafkaUnavailable

    cfg, store, _kafka = env
    kafka = SilentKafka()
    kafka.listed = {"g1", "g2"}
    with pytest.raises(KafkaUnavailable, match=r"none of the 2 listed group\(s\) answered"):
        sampler(cfg, store, kafka).step(1000.0)
    kafka.listed = set()  # nothing listed: nothing to sample, a healthy (empty) sample
    sampler(cfg, store, kafka).step(1010.0)

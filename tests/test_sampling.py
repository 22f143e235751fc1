"""The sampler's own logic (scheduling, exclusions, partial answers, anchors, deleted
topics) with a scripted stand-in for the Kafka client and a REAL store on a temp file.
What the real client does against a real broker is tested in test_kafka_client.py
and test_e2e.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from typing import TYPE_CHECKING

import pytest

from lagmon.kafka import KafkaSource
from lagmon.stages.sampler import Sampler, matching_pattern
from lagmon.store import Store


class ScriptedKafka:
    """Answers like KafkaClient from a dict the test edits between samples; records calls."""

    def __init__(self):
        self.topic_partitions = {"__consumer_offsets": 50, "orders": 2}
        self.topic_errors: set[str] = set()  # listed with an error (e.g. a leader election)
        self.listed = {"g1"}
        self.complete = True
        self.commits = {"g1": {("orders", 0): 0, ("orders", 1): 0}}
        self.head = {("orders", 0): 0, ("orders", 1): 0}
        self.times = {}
        self.calls = []

    def topics(self, *, deadline: float | None = None) -> tuple[dict[str, int], set[str]]:
        self.calls.append(("topics",))
        known = {t: n for t, n in self.topic_partitions.items() if t not in self.topic_errors}
        return known, set(self.topic_errors)

    def groups(self, *, deadline: float | None = None) -> tuple[set[str], bool]:
        self.calls.append(("groups",))
        return set(self.listed), self.complete

    def committed(
        self, groups: Iterable[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        groups = list(groups)
        self.calls.append(("committed", tuple(groups)))
        return {g: dict(self.commits.get(g, {})) for g in groups}, {}

    def heads(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> dict[tuple[str, int], int]:
        partitions = list(partitions)
        self.calls.append(("heads", tuple(partitions)))
        return {tp: self.head[tp] for tp in partitions if tp in self.head}

    def message_times(
        self,
        wanted: Iterable[tuple[str, int, int]],
        *,
        budget: float | None = None,
        deadline: float | None = None,
    ) -> dict[tuple[str, int, int], tuple[int, float] | None]:
        wanted = list(wanted)
        self.calls.append(("message_times", tuple(wanted)))
        return {k: self.times.get(k) for k in wanted}

    def heads_and_log_starts(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        partitions = list(partitions)
        starts = getattr(self, "log_start", {})
        return self.heads(partitions, deadline=deadline), {
            tp: starts[tp] for tp in partitions if tp in starts
        }


if TYPE_CHECKING:  # mypy: the stand-in answers like the real client
    _: KafkaSource = ScriptedKafka()


MONITORING = {
    "sample_interval_seconds": 10,
    "offline_sample_interval_seconds": 100,
    "offline_detection_consecutive_samples": 2,
    "online_lag_threshold_seconds": 30,
    "recovering_minimum_duration_seconds": 0,
}
EXCLUDE = {"topics": ["secret-*", "audit"], "groups": ["legacy-*"]}


@pytest.fixture
def env(tmp_path):
    cfg = make_config(tmp_path, monitoring=MONITORING, exclude=EXCLUDE)
    store = Store(cfg.database.path)
    kafka = ScriptedKafka()
    yield cfg, store, kafka
    store.close()


from tests.helpers import Clock, make_config  # noqa: E402


def sampler_at(cfg, store, kafka):
    clock = Clock()
    sampler = Sampler(cfg, store, kafka, clock=clock)
    step = sampler.step

    def stepped(now):
        clock.t = now
        return step(now)

    sampler.step = stepped  # type: ignore[method-assign]
    return sampler


def names(calls, kind):
    return [c for c in calls if c[0] == kind]


@pytest.mark.parametrize(
    "name, patterns, expected",
    [
        ("orders", ["orders"], "orders"),
        ("secret-1", ["secret-*"], "secret-*"),
        ("secret", ["secret-*"], None),
        ("__x", ["__*"], "__*"),
        ("a.b", ["a?b"], "a?b"),
        ("Orders", ["orders"], None),
    ],
)
def test_matching_pattern(name, patterns, expected):
    assert matching_pattern(name, patterns) == expected


def test_committed_first_then_heads_in_one_call_each(env):
    cfg, store, kafka = env
    kafka.listed = {"g1", "g2", "g3"}
    kafka.commits["g2"] = {("orders", 0): 0}
    sampler_at(cfg, store, kafka).step(1000.0)
    kinds = [c[0] for c in kafka.calls]
    assert kinds.index("committed") < kinds.index("heads")
    assert len(names(kafka.calls, "committed")) == 1 and len(names(kafka.calls, "heads")) == 1
    assert names(kafka.calls, "committed")[0][1] == ("g1", "g2", "g3")


def test_internal_and_excluded_topics_and_groups_are_never_monitored(env):
    cfg, store, kafka = env
    kafka.topic_partitions.update({"secret-pay": 1, "audit": 1, "__transaction_state": 3})
    kafka.head.update({("secret-pay", 0): 5, ("audit", 0): 5})
    kafka.listed = {"g1", "legacy-7"}
    kafka.commits["g1"][("secret-pay", 0)] = 1
    kafka.commits["legacy-7"] = {("orders", 0): 0}
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    assert set(sampler.statuses) == {("g1", "orders")}
    assert "legacy-7" not in names(kafka.calls, "committed")[0][1]
    sampled = {tp for c in names(kafka.calls, "heads") for tp in c[1]}
    assert {t for t, _ in sampled} == {"orders"}
    topics, groups = store.excluded()
    assert topics == {"secret-pay": "secret-*", "audit": "audit"}
    assert groups == {"legacy-7": "legacy-*"}


def test_idle_head_keeps_one_row_with_first_and_last_time(env):
    cfg, store, kafka = env
    sampler = sampler_at(cfg, store, kafka)
    kafka.head = {("orders", 0): 7, ("orders", 1): 0}
    for i in range(5):
        sampler.step(1000.0 + 10 * i)
    heads = store.latest_heads()
    row = heads[("orders", 0)]
    assert row.offset == 7 and row.last_seen > row.first_seen
    # one head row per distinct offset: 7 on partition 0, 0 on partition 1
    with closing(sqlite3.connect(cfg.database.path)) as db:
        rows = db.execute(
            "SELECT topic, partition, offset FROM partition_offsets ORDER BY 1, 2, 3"
        ).fetchall()
    assert rows == [("orders", 0, 7), ("orders", 1, 0)]


def test_partial_group_listing_does_not_make_a_group_absent(env):
    cfg, store, kafka = env
    kafka.listed = {"g1", "g2"}
    kafka.commits["g2"] = {("orders", 1): 0}
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    kafka.listed, kafka.complete = {"g1"}, False
    kafka.calls.clear()
    sampler.step(1010.0)
    assert "g2" in names(kafka.calls, "committed")[0][1]
    assert sampler.statuses[("g2", "orders")].state == "online"
    # one complete answer without g2 is not enough (a restarting broker can give one) ...
    kafka.complete = True
    sampler.step(1020.0)
    assert sampler.statuses[("g2", "orders")].state == "online"
    # ... two in a row: it is absent, goes offline, and is no longer sampled
    kafka.calls.clear()
    sampler.step(1030.0)
    assert "g2" not in names(kafka.calls, "committed")[0][1]
    assert sampler.statuses[("g2", "orders")].state == "offline"
    assert store.group_statuses()[("g2", "orders")].reason == "group no longer listed by the cluster"


def test_static_group_goes_offline_and_is_then_stored_and_evaluated_at_the_offline_rate(env):
    """An OFFLINE group's commits are fetched at every sample (one more request in the burst),
    but while they do not move its status and its stored commits change only at the coarse
    interval: the spec's coarse sampling is the resolution of what is stored and evaluated."""
    cfg, store, kafka = env
    kafka.head = {("orders", 0): 100, ("orders", 1): 100}
    kafka.commits["g1"] = {("orders", 0): 50, ("orders", 1): 100}
    sampler = sampler_at(cfg, store, kafka)
    t = 1000.0
    for _ in range(4):
        kafka.head = {tp: h + 10 for tp, h in kafka.head.items()}
        sampler.step(t)
        t += 10
    status = store.group_statuses()[("g1", "orders")]
    assert status.state == "offline"
    commit_seen = max(i.commit_last_seen for i in store.lag_inputs())
    kafka.calls.clear()
    for _ in range(5):  # 50 s: within the 100 s offline interval
        sampler.step(t)
        t += 10
    assert all("g1" in c[1] for c in names(kafka.calls, "committed"))
    assert store.group_statuses()[("g1", "orders")].last_sampled == status.last_sampled
    assert max(i.commit_last_seen for i in store.lag_inputs()) == commit_seen
    sampler.step(status.last_sampled + 100)
    assert store.group_statuses()[("g1", "orders")].last_sampled > status.last_sampled


def test_commit_below_history_is_anchored_once_on_the_message_time(env):
    cfg, store, kafka = env
    kafka.head = {("orders", 0): 500, ("orders", 1): 0}
    kafka.commits["g1"] = {("orders", 0): 20}
    kafka.times[("orders", 0, 20)] = (20, 400.0)
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    sampler.step(1010.0)
    assert [c[1] for c in names(kafka.calls, "message_times")] == [(("orders", 0, 20),)]
    inp = next(i for i in store.lag_inputs() if i.partition == 0)
    assert inp.anchor_below == (20, 400.0)
    status = store.group_statuses()[("g1", "orders")]
    assert status.lag_seconds == pytest.approx(1010.0 - 400.0, abs=1)


def test_an_anchor_batch_that_overruns_its_budget_is_halved_until_it_fits(env, monkeypatch):
    """A client that runs out of its budget on any batch of more than 3 timestamps (as the log
    bounds of 18,000 partitions did in 2 s) answers nothing for it: the batch must shrink, or no
    anchor is ever read, and every key must be asked again later, none marked as read."""
    from lagmon.stages import evaluate

    monkeypatch.setattr(evaluate, "MIN_ANCHOR_BATCH", 1)
    cfg, store, kafka = env
    kafka.topic_partitions["orders"] = 8
    kafka.head = {("orders", p): 500 for p in range(8)}
    kafka.commits["g1"] = {("orders", p): 20 for p in range(8)}
    kafka.times = {("orders", p, 20): (20, 400.0) for p in range(8)}
    answer = kafka.message_times

    def within_budget(wanted, **kw):
        wanted = list(wanted)
        return answer(wanted, **kw) if len(wanted) <= 3 else (kafka.calls.append(("overran",)) or {})

    kafka.message_times = within_budget
    sampler = sampler_at(cfg, store, kafka)
    sizes = []
    for k in range(8):  # 100 s apart: due at every step, OFFLINE or not
        sampler.step(1000.0 + 100 * k)
        sizes.append(sampler.anchor_batch)
    assert sizes[:2] == [4, 2], sizes  # 8 asked, overran: 4; overran again: 2; then fits
    inputs = [i for i in store.lag_inputs() if i.topic == "orders"]
    assert all(i.anchor_below == (20, 400.0) for i in inputs), inputs
    status = store.group_statuses()[("g1", "orders")]
    assert status.lag_seconds == pytest.approx(1700.0 - 400.0, abs=1)


def test_commit_on_a_deleted_message_anchors_the_next_one_as_a_lower_bound(env):
    cfg, store, kafka = env
    kafka.head = {("orders", 0): 500, ("orders", 1): 0}
    kafka.commits["g1"] = {("orders", 0): 20}
    kafka.times[("orders", 0, 20)] = (35, 700.0)  # 20..34 were deleted by retention
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    inp = next(i for i in store.lag_inputs() if i.partition == 0)
    assert inp.anchor_above == (35, 700.0)
    from tests import oracles

    lag = oracles.partition_lag(inp, 1000.0)
    assert lag is not None
    assert lag.lower_bound and lag.seconds == pytest.approx(300.0)


def test_deleted_topic_is_forgotten_and_recreated_topic_starts_fresh(env):
    cfg, store, kafka = env
    kafka.head = {("orders", 0): 100, ("orders", 1): 100}
    kafka.commits["g1"] = {("orders", 0): 90}
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    del kafka.topic_partitions["orders"]
    kafka.commits = {}
    sampler.step(1010.0)  # one listing without it is not enough (test_listing.py)
    assert sampler.last_result.deleted_topics == []
    sampler.step(1012.0)
    assert store.latest_heads() == {} and store.group_statuses() == {}
    assert sampler.last_result.deleted_topics == ["orders"]
    # recreated with a lower head while lagmon was down: history restarts
    kafka.topic_partitions["orders"] = 2
    kafka.head = {("orders", 0): 3, ("orders", 1): 0}
    kafka.commits = {"g1": {("orders", 0): 1}}
    store.record_heads({("orders", 0): 50}, 1015.0)
    sampler.step(1020.0)
    assert ("orders", 0) in sampler.last_result.reset_partitions
    assert store.latest_heads()[("orders", 0)].offset == 3


def test_new_partitions_are_picked_up(env):
    cfg, store, kafka = env
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    kafka.topic_partitions["orders"] = 3
    kafka.head[("orders", 2)] = 4
    kafka.commits["g1"][("orders", 2)] = 1
    sampler.step(1010.0)
    assert ("orders", 2) in store.latest_heads()
    assert any(i.partition == 2 for i in store.lag_inputs())


class TickingClock(Clock):
    """Each request reads a later time, as on a real cluster: heads come after commits."""

    def __call__(self):
        self.t += 0.01
        return self.t


def test_burst_past_a_caught_up_group_is_dated_by_its_first_message(env):
    cfg, store, kafka = env
    kafka.head = {("orders", 0): 100, ("orders", 1): 0}
    kafka.commits["g1"] = {("orders", 0): 100}
    clock = TickingClock()
    sampler = Sampler(cfg, store, kafka, clock=clock)

    def step(now):
        clock.t = now
        sampler.step(now)
        return store.group_statuses()[("g1", "orders")]

    step(1000.0)
    step(1010.0)  # caught up, idle
    kafka.head[("orders", 0)] = 200  # a burst at 1015; the commit is still 100 at 1020
    kafka.times[("orders", 0, 100)] = (100, 1015.0)
    first = step(1020.0)
    assert [c[1] for c in names(kafka.calls, "message_times")] == [(("orders", 0, 100),)]
    assert first.lag_seconds == 5  # at the sample, from the message's own time
    later = step(1030.0)  # still 100, now behind at its sample: it grows with time
    assert later.lag_seconds == 15
    assert len(names(kafka.calls, "message_times")) == 1


def test_reporter_reads_the_sampler_summary_and_agrees_with_the_history(env):
    from lagmon.stages.reporter import Reporter

    cfg, store, kafka = env
    kafka.listed = {"g1", "g2"}
    kafka.head = {("orders", 0): 100, ("orders", 1): 50}
    kafka.commits = {
        "g1": {("orders", 0): 100, ("orders", 1): 50},
        "g2": {("orders", 0): 10, ("orders", 1): 50},
    }
    sampler = sampler_at(cfg, store, kafka)
    for i, now in enumerate((1000.0, 1010.0, 1020.0, 1030.0)):
        kafka.head = {("orders", 0): 100 + 30 * i, ("orders", 1): 50 + 7 * i}
        kafka.commits["g1"] = {("orders", 0): 100 + 25 * i, ("orders", 1): 50 + 7 * i}
        sampler.step(now)
    reporter = Reporter(cfg, store)
    statuses = store.group_statuses()
    assert all(s.lag_summary is not None for s in statuses.values())
    for now in (1030.0, 1047.5, 5000.0):
        from_summaries = reporter.rows(now)
        store.save_group_status(
            [s.__class__(**{**s.__dict__, "lag_summary": None}) for s in statuses.values()]
        )
        from_history = reporter.rows(now)
        store.save_group_status(statuses.values())
        assert sorted(from_summaries, key=repr) == sorted(from_history, key=repr)
        assert {r.group_id: r.lag_seconds > 0 for r in from_summaries} == {"g1": True, "g2": True}


def test_commit_at_a_head_that_sat_idle_is_dated_by_its_message_but_a_moving_head_is_not(env):
    cfg, store, kafka = env
    kafka.listed = {"g1", "g2"}
    kafka.head = {("orders", 0): 100, ("orders", 1): 500}
    kafka.commits = {"g1": {("orders", 0): 90}, "g2": {("orders", 1): 480}}
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    kafka.head = {("orders", 0): 100, ("orders", 1): 520}  # 0 idle at 100; 1 moves every sample
    sampler.step(1010.0)
    kafka.head = {("orders", 0): 180, ("orders", 1): 540}  # a burst on 0 at 1013
    kafka.commits = {"g1": {("orders", 0): 100}, "g2": {("orders", 1): 520}}  # both commit a head offset
    kafka.times[("orders", 0, 100)] = (100, 1013.0)
    reads = len(
        names(kafka.calls, "message_times")
    )  # the first sample anchored 90 and 480 (below the history)
    sampler.step(1020.0)
    assert [c[1] for c in names(kafka.calls, "message_times")[reads:]] == [(("orders", 0, 100),)]
    statuses = store.group_statuses()
    assert statuses[("g1", "orders")].lag_seconds == 7  # 1020 - 1013, not 1020 - 1010
    assert statuses[("g2", "orders")].lag_seconds == 10  # interpolated at the row of 1010


FORGED = "evil\n2026-01-01 00:00:00 ERROR lagmon.sampler forged"
ESCAPE = "\x1b[31mred"


def test_control_characters_in_group_and_topic_names_are_escaped_in_log_lines(env, caplog):
    """A group id or topic cannot write a line of its own into the log, nor colour it."""
    cfg, store, kafka = env
    kafka.topic_partitions[ESCAPE] = 1
    kafka.head[(ESCAPE, 0)] = 5
    kafka.listed = {FORGED}
    kafka.commits = {FORGED: {(ESCAPE, 0): 2, ("orders", 0): 0}}
    with caplog.at_level("DEBUG", logger="lagmon.sampler"):
        sampler_at(cfg, store, kafka).step(1000.0)
    messages = [r.getMessage() for r in caplog.records if r.name == "lagmon.sampler"]
    monitoring = [m for m in messages if m.startswith("now monitoring group")]
    assert len(monitoring) == 2, messages
    for m in messages:
        assert "\n" not in m and "\x1b" not in m, m
    assert any("topic \\x1b[31mred" in m for m in monitoring), monitoring
    assert any("evil\\n2026-01-01" in m for m in monitoring), monitoring

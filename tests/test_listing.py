"""The sampler's listing (lagmon/stages/listing.py) with the scripted Kafka stand-in of
test_sampling.py and a REAL store: topics with metadata errors, deleted topics, exclusions
added to the config, offsets deleted while the group stays listed. The same against the real
broker: test_listing_kafka.py."""

from __future__ import annotations

import pytest

from lagmon.kafka import KafkaUnavailable
from lagmon.stages.listing import SAMPLE_DEADLINE_MAX, sample_budget
from lagmon.stages.reporter import Reporter
from lagmon.store import Store
from lagmon.supervisor import STOPWAITSECS
from tests.helpers import make_config
from tests.test_sampling import MONITORING, ScriptedKafka, sampler_at


@pytest.fixture
def env(tmp_path):
    cfg = make_config(tmp_path, monitoring=MONITORING)
    store = Store(cfg.database.path)
    kafka = ScriptedKafka()
    kafka.head = {("orders", 0): 100, ("orders", 1): 100}
    kafka.commits = {"g1": {("orders", 0): 90, ("orders", 1): 90}}
    yield tmp_path, cfg, store, kafka
    store.close()


def reported(cfg, store, now):
    return {(r.group_id, r.topic): r for r in Reporter(cfg, store).rows(now)}


def test_a_topic_listed_with_an_error_keeps_its_history(env):
    _tmp, cfg, store, kafka = env
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    for now in (1010.0, 1020.0, 1030.0):  # a leader election that lasts three samples
        kafka.topic_errors = {"orders"}
        sampler.step(now)
        assert sampler.last_result.deleted_topics == []
    assert ("g1", "orders") in store.group_statuses()
    assert set(store.latest_heads()) == {("orders", 0), ("orders", 1)}
    assert store.lag_inputs([("g1", "orders")])
    kafka.topic_errors = set()
    sampler.step(1040.0)
    assert sampler.statuses[("g1", "orders")].last_sampled == 1040.0


def test_a_topic_missing_from_one_listing_is_kept_and_from_two_in_a_row_deleted(env):
    _tmp, cfg, store, kafka = env
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    del kafka.topic_partitions["orders"]
    sampler.step(1010.0)
    assert sampler.last_result.deleted_topics == []
    assert ("g1", "orders") in store.group_statuses()
    kafka.topic_partitions["orders"] = 2  # back: the count starts again
    sampler.step(1020.0)
    del kafka.topic_partitions["orders"]
    sampler.step(1030.0)
    assert sampler.last_result.deleted_topics == []
    # an errored answer in between is not "missing" either, nor does it confirm the deletion
    kafka.topic_partitions["orders"], kafka.topic_errors = 2, {"orders"}
    sampler.step(1040.0)
    del kafka.topic_partitions["orders"]
    kafka.topic_errors = set()
    sampler.step(1050.0)
    assert sampler.last_result.deleted_topics == []
    sampler.step(1060.0)
    assert sampler.last_result.deleted_topics == ["orders"]
    assert store.group_statuses() == {} and store.latest_heads() == {}


def restarted_with(tmp, store, kafka, exclude):
    """The sampler restarted with a new config: exclude added."""
    cfg = make_config(tmp, monitoring=MONITORING, exclude=exclude)
    return cfg, sampler_at(cfg, store, kafka)


@pytest.mark.parametrize(
    "exclude", [{"topics": ["ord*"], "groups": []}, {"topics": [], "groups": ["g1"]}], ids=["topic", "group"]
)
def test_a_newly_excluded_pair_leaves_the_report_at_once_without_an_offline_transition(env, exclude):
    tmp, cfg, store, kafka = env
    kafka.listed = {"g1", "g2"}
    kafka.commits["g2"] = {("orders", 0): 95}
    kafka.topic_partitions["other"] = 1
    kafka.head[("other", 0)] = 7
    kafka.commits["g1"][("other", 0)] = 7
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    sampler.step(1010.0)
    before = set(reported(cfg, store, 1010.0))
    assert before == {("g1", "orders"), ("g2", "orders"), ("g1", "other")}
    new_cfg, sampler = restarted_with(tmp, store, kafka, exclude)
    gone = (
        {k for k in before if k[1] == "orders"} if exclude["topics"] else {k for k in before if k[0] == "g1"}
    )
    # the reporter restarted with the new config leaves them out before the sampler ran
    assert set(reported(new_cfg, store, 1011.0)) == before - gone
    for now in (1020.0, 1030.0, 1040.0):
        sampler.step(now)
        assert set(reported(new_cfg, store, now)) == before - gone
    assert set(store.group_statuses()) == before - gone
    for key in gone:
        assert store.transitions(*key) == []  # not "group no longer listed by the cluster"
    assert not any(k in gone for k in store.commit_keys())


def test_a_pair_without_a_committed_offset_any_more_leaves_after_two_answers(env):
    _tmp, cfg, store, kafka = env
    kafka.topic_partitions["other"] = 1
    kafka.head[("other", 0)] = 7
    kafka.commits["g1"][("other", 0)] = 5
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    assert set(reported(cfg, store, 1000.0)) == {("g1", "orders"), ("g1", "other")}
    del kafka.commits["g1"][("other", 0)]  # deleteConsumerGroupOffsets(g1, other); g1 stays listed
    sampler.step(1010.0)
    assert set(reported(cfg, store, 1010.0)) == {("g1", "orders"), ("g1", "other")}
    sampler.step(1020.0)
    assert set(reported(cfg, store, 1020.0)) == {("g1", "orders")}
    [t] = store.transitions("g1", "other")
    assert (t.from_state, t.to_state, t.reason) == (
        "online",
        "offline",
        "no committed offset for topic other any more",
    )
    assert ("g1", "other") not in store.commit_keys()
    # it commits again: a new pair, seen when g1 is next sampled (its orders pair went offline
    # meanwhile, static: at the offline interval)
    kafka.commits["g1"][("other", 0)] = 6
    sampler.step(1130.0)
    assert ("g1", "other") in reported(cfg, store, 1130.0)


def test_a_group_whose_offset_fetch_fails_is_not_taken_for_one_without_commits(env):
    _tmp, cfg, store, kafka = env
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    answer = kafka.committed
    kafka.committed = lambda groups, deadline=None: ({}, {g: "GROUP_AUTHORIZATION_FAILED" for g in groups})  # type: ignore[method-assign]
    for now in (1010.0, 1020.0, 1030.0):
        with pytest.raises(KafkaUnavailable, match="answered its committed-offsets request"):
            sampler.step(now)  # a sample holding no group's position is a failed one
    assert ("g1", "orders") in store.group_statuses()
    kafka.committed = answer  # type: ignore[method-assign]


def test_every_kafka_call_of_a_sample_gets_one_deadline_well_under_stopwaitsecs(env):
    _tmp, cfg, store, kafka = env
    seen = []
    for name in ("topics", "groups", "committed", "heads"):
        real = getattr(kafka, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen.append((_name, kwargs.get("deadline")))
            return _real(*args, **kwargs)

        setattr(kafka, name, spy)
    sampler = sampler_at(cfg, store, kafka)
    sampler.step(1000.0)
    assert [n for n, _ in seen] == ["topics", "groups", "committed", "heads"]
    deadlines = {d for _, d in seen}
    assert len(deadlines) == 1 and None not in deadlines
    assert sample_budget(10) == 15.0 and sample_budget(3600) == SAMPLE_DEADLINE_MAX <= STOPWAITSECS / 2

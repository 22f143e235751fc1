"""The sampler's listing against the real broker: a topic deleted for real leaves after two
samples, not one; a group's offsets deleted for one topic (Admin.deleteConsumerGroupOffsets)
while the group stays listed make that pair leave the report after two answers, with a
transition saying why.

confluent-kafka (2.16) has no delete_consumer_group_offsets, so the offsets are deleted with the
broker's own Java Admin client (Admin.deleteConsumerGroupOffsets), run as a single-file Java
program on the broker's jars."""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient

from lagmon.config import KafkaSettings
from lagmon.kafka import KafkaClient
from lagmon.stages.reporter import Reporter
from lagmon.stages.sampler import Sampler
from lagmon.store import Store
from testing.broker import default_version
from testing.fetch import check_java, lib_dir
from testing.traffic import unique
from tests.helpers import make_config
from tests.test_kafka_client import commit_offsets, produce
from tests.test_sampling import MONITORING

pytestmark = pytest.mark.kafka

WAIT = 60.0  # bound for test-side waits (a busy shared machine)

DELETE_OFFSETS_JAVA = """
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.TopicPartition;

public class DeleteOffsets {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        Set<TopicPartition> parts = new HashSet<>();
        for (int i = 3; i < a.length; i++) parts.add(new TopicPartition(a[2], Integer.parseInt(a[i])));
        try (Admin admin = Admin.create(p)) {
            admin.deleteConsumerGroupOffsets(a[1], parts).all().get(30, java.util.concurrent.TimeUnit.SECONDS);
        }
    }
}
"""


def delete_offsets(tmp_path, bootstrap: str, group: str, topic: str, partitions: list[int]) -> None:
    """Admin.deleteConsumerGroupOffsets(group, topic's partitions), by the broker's Java client."""
    source = tmp_path / "DeleteOffsets.java"
    source.write_text(DELETE_OFFSETS_JAVA)
    java = check_java(default_version())  # raises (the test fails) with the reason if missing
    out = subprocess.run(
        [java, "-cp", f"{lib_dir(default_version())}/*", str(source), bootstrap, group, topic]
        + [str(p) for p in partitions],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"not within {WAIT:.0f} s: {what}"
        time.sleep(0.2)


@pytest.fixture
def sampling(tmp_path, kafka_bootstrap):
    cfg = make_config(tmp_path, kafka_bootstrap, monitoring=MONITORING)
    store = Store(cfg.database.path)
    client = KafkaClient(KafkaSettings(bootstrap_servers=kafka_bootstrap, request_timeout_seconds=10))
    yield cfg, store, client, Sampler(cfg, store, client)
    client.close()
    store.close()


def test_a_topic_deleted_for_real_leaves_after_two_samples_not_one(sampling, kafka_bootstrap, make_topic):
    _cfg, store, client, sampler = sampling
    topic, group = make_topic(2, prefix="deleted"), unique("g-deleted")
    produce(kafka_bootstrap, topic, {0: 3, 1: 3})
    commit_offsets(kafka_bootstrap, {group: [(topic, 0, 1), (topic, 1, 2)]})
    t0 = time.time()
    sampler.step(t0)
    assert (group, topic) in store.group_statuses()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([topic], operation_timeout=30)[topic].result(WAIT)

    def unlisted() -> bool:
        known, errored = client.topics()
        return topic not in known and topic not in errored

    wait_until(unlisted, f"{topic} no longer listed")
    sampler.step(t0 + 10)
    assert topic not in sampler.last_result.deleted_topics
    assert (group, topic) in store.group_statuses()
    assert any(t == topic for t, _p in store.latest_heads())
    sampler.step(t0 + 20)
    assert topic in sampler.last_result.deleted_topics
    assert not any(k[1] == topic for k in store.group_statuses())
    assert not any(t == topic for t, _p in store.latest_heads())


def test_offsets_deleted_for_one_topic_make_that_pair_leave_after_two_answers(
    tmp_path, sampling, kafka_bootstrap, make_topic
):
    cfg, store, client, sampler = sampling
    kept, dropped, group = make_topic(1, prefix="kept"), make_topic(1, prefix="dropped"), unique("g-offsets")
    produce(kafka_bootstrap, kept, {0: 3})
    produce(kafka_bootstrap, dropped, {0: 3})
    commit_offsets(kafka_bootstrap, {group: [(kept, 0, 1), (dropped, 0, 2)]})
    t0 = time.time()
    sampler.step(t0)
    rows = {(r.group_id, r.topic) for r in Reporter(cfg, store).rows(t0)}
    assert {(group, kept), (group, dropped)} <= rows
    delete_offsets(tmp_path, kafka_bootstrap, group, dropped, [0])
    wait_until(lambda: (dropped, 0) not in client.committed([group])[0].get(group, {}), "offsets deleted")
    assert group in client.groups()[0]  # still listed
    sampler.step(t0 + 10)
    assert (group, dropped) in {(r.group_id, r.topic) for r in Reporter(cfg, store).rows(t0 + 10)}
    sampler.step(t0 + 20)
    rows = {(r.group_id, r.topic) for r in Reporter(cfg, store).rows(t0 + 20)}
    assert (group, kept) in rows and (group, dropped) not in rows
    [t] = store.transitions(group, dropped)
    assert t.to_state == "offline" and t.reason == f"no committed offset for topic {dropped} any more"

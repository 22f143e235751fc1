"""The sampler's committed-offsets fetch runs in a child process, so a librdkafka crash
(librdkafka#5040: SIGSEGV on NOT_COORDINATOR) costs one sample, not the sampler."""

from __future__ import annotations

import types

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from lagmon.kafka import IsolatedKafkaClient, KafkaClient, KafkaUnavailable
from testing.traffic import admin, create_topic, unique

pytestmark = pytest.mark.kafka


def settings(bootstrap):
    return types.SimpleNamespace(
        bootstrap_servers=bootstrap,
        security_protocol="PLAINTEXT",
        sasl_mechanism=None,
        sasl_username=None,
        sasl_password=None,
        ssl_ca_location=None,
        request_timeout_seconds=5.0,
        librdkafka={},
    )


@pytest.fixture
def groups(kafka_bootstrap):
    topic = unique("iso")
    create_topic(kafka_bootstrap, topic, 2)
    a = admin(kafka_bootstrap)
    names = [unique("iso-g") for _ in range(3)]
    futures = [  # one group per call; all in flight at once
        a.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(g, [TopicPartition(topic, 0, i), TopicPartition(topic, 1, 0)])]
        )[g]
        for i, g in enumerate(names)
    ]
    for f in futures:
        f.result(10)
    return topic, names


def test_isolated_committed_matches_the_in_process_client(kafka_bootstrap, groups):
    topic, names = groups
    plain = KafkaClient(settings(kafka_bootstrap))
    isolated = IsolatedKafkaClient(settings(kafka_bootstrap))
    try:
        expected = plain.committed(names + ["no-such-group"])
        assert isolated.committed(names + ["no-such-group"]) == expected
        assert expected[0][names[2]] == {(topic, 0): 2, (topic, 1): 0}
        assert isolated.requests == len(names) + 1
        assert isolated.committed([]) == ({}, {})
    finally:
        plain.close()
        isolated.close()
    assert isolated._worker is None


def test_a_crashing_fetch_costs_one_sample_not_the_sampler(kafka_bootstrap, groups, monkeypatch):
    _topic, names = groups
    client = IsolatedKafkaClient(settings(kafka_bootstrap))
    try:
        monkeypatch.setenv("LAGMON_TEST_CRASH_COMMITTED", "1")
        with pytest.raises(KafkaUnavailable) as info:
            client.committed(names)
        assert info.value.kind == "error"
        assert "crashed (signal 11)" in str(info.value) and "librdkafka#5040" in str(info.value)
        monkeypatch.delenv("LAGMON_TEST_CRASH_COMMITTED")
        offsets, errors = client.committed(names)  # a new child answers the next sample
        assert set(offsets) == set(names) and not errors
    finally:
        client.close()


def test_auth_failure_in_the_child_keeps_its_kind(kafka_sasl_bootstrap):
    k = settings(kafka_sasl_bootstrap)
    k.security_protocol, k.sasl_mechanism = "SASL_PLAINTEXT", "PLAIN"
    k.sasl_username, k.sasl_password = "lagmon", "not-the-password"
    client = IsolatedKafkaClient(k)
    try:
        with pytest.raises(KafkaUnavailable) as info:
            client.committed(["any-group"])
        assert info.value.kind == "auth"
        assert "not-the-password" not in str(info.value)
    finally:
        client.close()

"""lagmon.kafka against a real broker (and client_properties without one)."""

from __future__ import annotations

import socket
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from lagmon.config import KafkaSettings
from lagmon.kafka import ANCHOR_GROUP_ID, KafkaClient, KafkaUnavailable, client_properties

BASE_MS = 1_700_000_000_000
WAIT = 30.0  # bound for test-side waits


def settings(bootstrap: str, **kw) -> KafkaSettings:
    kw.setdefault("request_timeout_seconds", 10.0)
    return KafkaSettings(bootstrap_servers=bootstrap, **kw)


def produce(bootstrap: str, topic: str, counts: dict[int, int], *, base_ms: int = BASE_MS) -> None:
    """counts: partition -> number of messages; message i of partition p has timestamp base_ms + 1000*i + p."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition, n in counts.items():
        for i in range(n):
            producer.produce(
                topic, value=b"m%d" % i, partition=partition, timestamp=base_ms + 1000 * i + partition
            )
    assert producer.flush(WAIT) == 0


def commit_offsets(bootstrap: str, offsets: dict[str, list[tuple[str, int, int]]]) -> None:
    """Commit offsets for groups without a live consumer (all requests in flight, then waited)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = []
    for group, tps in offsets.items():
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, o) for t, p, o in tps])
        futures.extend(admin.alter_consumer_group_offsets([request], request_timeout=WAIT).values())
    for future in futures:
        future.result(timeout=WAIT)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- no broker needed


def test_client_properties_maps_settings_and_passthrough_wins():
    k = KafkaSettings(
        bootstrap_servers="b1:9092,b2:9092",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
        ssl_ca_location="/ca.pem",
        librdkafka={"sasl.username": "override", "socket.keepalive.enable": "true"},
    )
    assert client_properties(k) == {
        "bootstrap.servers": "b1:9092,b2:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "override",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
        "socket.keepalive.enable": "true",
    }
    assert client_properties(KafkaSettings(bootstrap_servers="b:1")) == {
        "bootstrap.servers": "b:1",
        "security.protocol": "PLAINTEXT",
    }


def test_bad_passthrough_property_is_an_error_without_the_password():
    k = settings("127.0.0.1:1", sasl_password="hunter2-secret", librdkafka={"no.such.property": "x"})
    with pytest.raises(KafkaUnavailable) as info:
        KafkaClient(k)
    assert info.value.kind == "error"
    assert "no.such.property" in str(info.value) and "hunter2-secret" not in str(info.value)


def test_empty_requests_issue_nothing():
    client = KafkaClient(settings("127.0.0.1:1"))
    try:
        assert client.committed([]) == ({}, {})
        assert client.heads([]) == {}
        assert client.requests == 0
    finally:
        client.close()


class SilentConsumer:
    """A consumer whose fetches bring nothing in time (a big first read on a slow broker)."""

    def consume(self, num_messages, timeout):
        time.sleep(min(timeout, 0.05))
        return []


def test_an_anchor_read_out_of_budget_leaves_the_rest_for_a_later_sample():
    """The log bounds answered just before: running out of the budget is not an outage, so it
    must not fail the sample (it did at about 12,000 partitions with a 2 s budget)."""
    client = KafkaClient(settings("127.0.0.1:1"))
    try:
        starts = {("t", 0): (5, 5), ("t", 1): (7, 7)}
        began = time.monotonic()
        assert client._read_many(SilentConsumer(), starts, began + 0.3, "reading") == {}  # type: ignore[arg-type]
        assert time.monotonic() - began < 2.0
    finally:
        client.close()


def test_unreachable_broker_is_reported_within_the_timeout(capfd):
    bootstrap = f"127.0.0.1:{closed_port()}"
    client = KafkaClient(settings(bootstrap, request_timeout_seconds=1.0))
    try:
        for call in (
            client.topics,
            client.groups,
            lambda: client.committed(["g"]),
            lambda: client.heads([("t", 0)]),
            lambda: client.message_time("t", 0, 0),
        ):
            started = time.monotonic()
            with pytest.raises(KafkaUnavailable) as info:
                call()
            elapsed = time.monotonic() - started
            assert info.value.kind == "unreachable", str(info.value)
            assert bootstrap in str(info.value)
            assert elapsed < 1.0 + 2.0, elapsed
    finally:
        client.close()
    assert "Connection refused" not in capfd.readouterr().err  # librdkafka logs do not leak


def test_a_listener_that_never_answers_is_a_timeout():
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        bootstrap = f"127.0.0.1:{silent.getsockname()[1]}"
        with KafkaClient(settings(bootstrap, request_timeout_seconds=1.0)) as client:
            started = time.monotonic()
            with pytest.raises(KafkaUnavailable) as info:
                client.groups()
            assert time.monotonic() - started < 1.0 + 2.0
    assert info.value.kind == "timeout" and bootstrap in str(info.value)


def test_log_bounds_overrunning_the_anchor_budget_leave_every_key_for_a_later_sample():
    """A listener that answers nothing within the budget (as 18,000 partitions' log bounds did
    not within 2 s): the timestamps are left out, not taken for an outage that fails the sample;
    an unreachable broker still raises (test above)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        bootstrap = f"127.0.0.1:{silent.getsockname()[1]}"
        with KafkaClient(settings(bootstrap, request_timeout_seconds=5.0)) as client:
            started = time.monotonic()
            assert client.message_times([("t", 0, 5), ("t", 1, 7)], budget=0.5) == {}
            assert time.monotonic() - started < 0.5 + 2.0


# --------------------------------------------------------------------------- real broker


@pytest.mark.kafka
def test_topics_lists_partition_counts(kafka_bootstrap, make_topic):
    three, one = make_topic(3), make_topic(1)
    with KafkaClient(settings(kafka_bootstrap)) as client:
        topics, errored = client.topics()
        assert topics[three] == 3 and topics[one] == 1
        assert three not in errored and one not in errored
        assert client.requests >= 1


@pytest.mark.kafka
def test_groups_and_committed_offsets_of_a_real_consumer(kafka_bootstrap, make_topic):
    topic = make_topic(2)
    produce(kafka_bootstrap, topic, {0: 5, 1: 5})
    live = f"live-{topic}"
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": live,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])  # partition 1 never committed
    seen = []
    deadline = time.monotonic() + WAIT
    while len(seen) < 3 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            seen.append(msg.offset())
    consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    consumer.close()
    parked = f"parked-{topic}"
    commit_offsets(kafka_bootstrap, {parked: [(topic, 0, 1), (topic, 1, 4)]})

    with KafkaClient(settings(kafka_bootstrap)) as client:
        groups, complete = client.groups()
        assert {live, parked} <= groups and complete
        before = client.requests
        offsets, errors = client.committed([live, parked, f"never-{topic}", live])
        assert client.requests - before == 3  # one request per distinct group
    assert errors == {}
    assert offsets[live] == {(topic, 0): 3}
    assert offsets[parked] == {(topic, 0): 1, (topic, 1): 4}
    assert offsets[f"never-{topic}"] == {}


@pytest.mark.kafka
def test_committed_fetches_fifty_groups_in_one_burst(kafka_bootstrap, make_topic):
    topic = make_topic(2)
    produce(kafka_bootstrap, topic, {0: 60, 1: 60})
    groups = {f"burst-{i:02d}-{topic}": [(topic, 0, i), (topic, 1, 60 - i)] for i in range(50)}
    commit_offsets(kafka_bootstrap, groups)
    with KafkaClient(settings(kafka_bootstrap)) as client:
        client.committed([next(iter(groups))])  # coordinator lookup warmed
        before = client.requests
        started = time.monotonic()
        offsets, errors = client.committed(groups)
        elapsed = time.monotonic() - started
        assert client.requests - before == 50
    assert errors == {}
    assert offsets == {g: {(t, p): o for t, p, o in tps} for g, tps in groups.items()}
    assert elapsed < 5.0, f"50 groups took {elapsed:.2f} s"


@pytest.mark.kafka
def test_heads_in_one_batched_request(kafka_bootstrap, make_topic):
    a, b = make_topic(3), make_topic(1)
    produce(kafka_bootstrap, a, {0: 4, 1: 0, 2: 7})
    produce(kafka_bootstrap, b, {0: 2})
    with KafkaClient(settings(kafka_bootstrap)) as client:
        before = client.requests
        heads = client.heads([(a, 0), (a, 1), (a, 2), (b, 0), (a, 9), (f"missing-{a}", 0)])
        assert client.requests - before == 1
    assert heads == {(a, 0): 4, (a, 1): 0, (a, 2): 7, (b, 0): 2}  # errored partitions left out


@pytest.mark.kafka
def test_heads_count_uncommitted_transactional_messages(kafka_bootstrap, make_topic):
    topic = make_topic(1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{topic}"})
    producer.init_transactions(WAIT)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, b"tx%d" % i, partition=0)
    assert producer.flush(WAIT) == 0
    try:
        with KafkaClient(settings(kafka_bootstrap)) as client:
            assert client.heads([(topic, 0)]) == {(topic, 0): 3}  # read_uncommitted high watermark
    finally:
        producer.abort_transaction(WAIT)


@pytest.mark.kafka
def test_message_time_is_the_message_timestamp(kafka_bootstrap, make_topic):
    topic = make_topic(2)
    produce(kafka_bootstrap, topic, {0: 5, 1: 3})
    with KafkaClient(settings(kafka_bootstrap)) as client:
        assert client.message_time(topic, 0, 3) == (3, (BASE_MS + 3000) / 1000)
        assert client.message_time(topic, 1, 0) == (0, (BASE_MS + 1) / 1000)
        assert client.message_time(topic, 1, 2) == (2, (BASE_MS + 2001) / 1000)
        assert client.message_time(topic, 0, 5) is None  # at the head: nothing yet
        assert client.message_time(topic, 0, 99) is None
        assert client.message_time(f"missing-{topic}", 0, 0) is None
        groups, _complete = client.groups()
    assert ANCHOR_GROUP_ID not in groups  # assign() only, never committed


@pytest.mark.kafka
def test_message_time_repeated_reads_stay_exact(kafka_bootstrap, make_topic):
    topic = make_topic(2)
    produce(kafka_bootstrap, topic, {0: 30, 1: 30})
    with KafkaClient(settings(kafka_bootstrap)) as client:
        for i in [0, 29, 5, 5, 17, 3, 28, 1, 30, 12]:  # back and forth, both partitions
            for partition in (0, 1):
                expected = None if i >= 30 else (i, (BASE_MS + 1000 * i + partition) / 1000)
                assert client.message_time(topic, partition, i) == expected, (partition, i)


@pytest.mark.kafka
def test_message_time_reads_the_next_available_message_after_deletion(kafka_bootstrap, make_topic):
    topic = make_topic(1)
    produce(kafka_bootstrap, topic, {0: 8})
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 5)], request_timeout=WAIT).values():
        assert future.result(timeout=WAIT).low_watermark == 5
    with KafkaClient(settings(kafka_bootstrap)) as client:
        assert client.message_time(topic, 0, 2) == (5, (BASE_MS + 5000) / 1000)
        assert client.message_time(topic, 0, 6) == (6, (BASE_MS + 6000) / 1000)
        assert client.message_time(topic, 0, 8) is None


@pytest.mark.kafka
def test_message_time_of_an_empty_partition_is_none(kafka_bootstrap, make_topic):
    topic = make_topic(1)
    with KafkaClient(settings(kafka_bootstrap)) as client:
        assert client.message_time(topic, 0, 0) is None


@pytest.mark.kafka
def test_sasl_listener_with_the_right_password(kafka_bootstrap, kafka_sasl_bootstrap, make_topic):
    topic = make_topic(2)
    produce(kafka_bootstrap, topic, {0: 3, 1: 1})
    commit_offsets(kafka_bootstrap, {f"sasl-{topic}": [(topic, 1, 1)]})
    k = settings(
        kafka_sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="lagmon",
        sasl_password="lagmon-secret",
    )
    with KafkaClient(k) as client:
        assert client.topics()[0][topic] == 2
        assert f"sasl-{topic}" in client.groups()[0]
        assert client.committed([f"sasl-{topic}"]) == ({f"sasl-{topic}": {(topic, 1): 1}}, {})
        assert client.heads([(topic, 0), (topic, 1)]) == {(topic, 0): 3, (topic, 1): 1}
        assert client.message_time(topic, 0, 1) == (1, (BASE_MS + 1000) / 1000)


@pytest.mark.kafka
def test_wrong_sasl_password_is_auth_quickly_and_never_shown(kafka_sasl_bootstrap, capfd):
    timeout = 10.0
    password = "not-the-lagmon-secret"
    k = settings(
        kafka_sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="lagmon",
        sasl_password=password,
        request_timeout_seconds=timeout,
    )
    client = KafkaClient(k)
    try:
        for call in (
            client.topics,
            client.groups,
            lambda: client.committed(["g"]),
            lambda: client.heads([("t", 0)]),
        ):
            started = time.monotonic()
            with pytest.raises(KafkaUnavailable) as info:
                call()
            elapsed = time.monotonic() - started
            message = str(info.value)
            assert info.value.kind == "auth", message
            assert elapsed < timeout + 2.0, elapsed
            assert elapsed < timeout / 2, f"auth failure took {elapsed:.2f} s: the client was not polled"
            assert kafka_sasl_bootstrap in message and "SASL_PLAINTEXT" in message and "PLAIN" in message
            assert password not in message
    finally:
        client.close()
    err = capfd.readouterr().err
    assert "SASL authentication error" not in err and password not in err

"""Shared fixtures: a real single-node Kafka broker for tests marked `kafka`.

`kafka_bootstrap` uses $LAGMON_TEST_BOOTSTRAP when that broker answers; otherwise it starts
one with testing.broker.Broker (version from $LAGMON_KAFKA_VERSION, ports 19092/19093/19094)
and stops it after the session if this session started it. A missing Java or Maven makes
every test that needs the broker FAIL with the reason; nothing here skips.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

from testing.broker import Broker
from testing.fetch import Failure
from testing.probe import metadata_ok, warm_group_coordinator

PORT, SASL_PORT, CONTROLLER_PORT = 19092, 19093, 19094
TOPIC_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """Bootstrap servers of a real broker whose group coordinator is loaded."""
    external = os.environ.get("LAGMON_TEST_BOOTSTRAP")
    if external:
        if metadata_ok(external):
            if warm_group_coordinator(external) is False:
                pytest.fail(f"LAGMON_TEST_BOOTSTRAP={external}: group coordinator not ready", pytrace=False)
            yield external
            return
        print(f"\nLAGMON_TEST_BOOTSTRAP={external} does not answer; starting a local broker", file=sys.stderr)

    broker = Broker(PORT, SASL_PORT, CONTROLLER_PORT)
    running = broker.status() != "stopped"
    if not running:
        started = time.monotonic()
        try:
            broker.start()
        except Failure as exc:
            pytest.fail(f"could not start the test Kafka broker (exit {exc.code}):\n{exc}", pytrace=False)
        print(f"\nstarted Kafka for the tests in {time.monotonic() - started:.1f} s", file=sys.stderr)
    try:
        yield broker.bootstrap
    finally:
        if not running:
            broker.stop()


@pytest.fixture(scope="session")
def kafka_sasl_bootstrap(kafka_bootstrap):
    """SASL_PLAINTEXT listener (mechanism PLAIN; users admin/admin-secret, lagmon/lagmon-secret)."""
    return os.environ.get("LAGMON_TEST_SASL_BOOTSTRAP") or f"127.0.0.1:{SASL_PORT}"


@pytest.fixture
def make_topic(kafka_bootstrap):
    """make_topic(partitions=1, prefix="t") -> a new uniquely named topic, deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(partitions: int = 1, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        future = admin.create_topics(
            [NewTopic(name, partitions, 1)], request_timeout=TOPIC_TIMEOUT, operation_timeout=TOPIC_TIMEOUT
        )[name]
        future.result(timeout=TOPIC_TIMEOUT + 5)
        created.append(name)
        deadline = time.monotonic() + TOPIC_TIMEOUT
        while time.monotonic() < deadline:  # every partition has a leader
            topic = admin.list_topics(name, timeout=5).topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and len(topic.partitions) == partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                return name
            time.sleep(0.1)
        raise TimeoutError(f"topic {name} had no leader for every partition within {TOPIC_TIMEOUT:.0f} s")

    yield make
    if created:
        futures = admin.delete_topics(created, request_timeout=TOPIC_TIMEOUT, operation_timeout=TOPIC_TIMEOUT)
        for future in futures.values():
            try:
                future.result(timeout=TOPIC_TIMEOUT + 5)
            except Exception as exc:
                print(f"could not delete a test topic: {exc}", file=sys.stderr)

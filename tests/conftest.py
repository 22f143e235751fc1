"""Shared fixtures: a real single-node Kafka broker for tests marked `kafka`.

`kafka_bootstrap` uses $LAGMON_TEST_BOOTSTRAP when that broker answers; otherwise it starts
one with scripts/kafka_broker.py (version from $LAGMON_KAFKA_VERSION, ports 19092/19093/19094)
and stops it after the session if this session started it. A missing Java or Maven makes
every test that needs the broker FAIL with the reason; nothing here skips.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BROKER_SCRIPT = REPO / "scripts" / "kafka_broker.py"
PORT, SASL_PORT, CONTROLLER_PORT = 19092, 19093, 19094
PORT_ARGS = ["--port", str(PORT), "--sasl-port", str(SASL_PORT), "--controller-port", str(CONTROLLER_PORT)]
START_TIMEOUT = 900.0  # a first run fetches the broker jars with Maven
TOPIC_TIMEOUT = 30.0


@functools.lru_cache(maxsize=1)
def _broker_module():
    spec = importlib.util.spec_from_file_location("lagmon_kafka_broker", BROKER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_broker(command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BROKER_SCRIPT), command, *PORT_ARGS],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _answers(bootstrap: str, timeout: float = 5.0) -> bool:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    broker = _broker_module()
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": broker._quiet_logger()})
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """Bootstrap servers of a real broker whose group coordinator is loaded."""
    external = os.environ.get("LAGMON_TEST_BOOTSTRAP")
    if external:
        if _answers(external):
            if _broker_module().warm_group_coordinator(external) is False:
                pytest.fail(f"LAGMON_TEST_BOOTSTRAP={external}: group coordinator not ready", pytrace=False)
            yield external
            return
        print(f"\nLAGMON_TEST_BOOTSTRAP={external} does not answer; starting a local broker", file=sys.stderr)

    running = _run_broker("status", 60).returncode == 0
    if not running:
        started = time.monotonic()
        out = _run_broker("start", START_TIMEOUT)
        if out.returncode != 0:
            pytest.fail(
                f"could not start the test Kafka broker with {BROKER_SCRIPT.name} "
                f"(exit {out.returncode}):\n{out.stderr.strip()}",
                pytrace=False,
            )
        print(
            f"\nstarted Kafka for the tests in {time.monotonic() - started:.1f} s: {out.stderr.strip()}",
            file=sys.stderr,
        )
    try:
        yield f"127.0.0.1:{PORT}"
    finally:
        if not running:
            _run_broker("stop", 120)


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

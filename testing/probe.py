"""Probes of a running Kafka broker (ours or anybody's): is it there, is its group coordinator loaded."""

from __future__ import annotations

import socket
import time

HOST = "127.0.0.1"
WARM_TIMEOUT = 60.0  # seconds for the group coordinator to load after the broker answers


def port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def metadata_ok(bootstrap: str, timeout: float = 5.0) -> bool | None:
    """A real Metadata request via confluent_kafka; None when it is not importable."""
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return None
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "log_level": 0,
            "logger": quiet_logger(),
            "socket.connection.setup.timeout.ms": 3000,
        }
    )
    try:
        md = admin.list_topics(timeout=timeout)
        return bool(md.brokers)
    except Exception:
        return False


def quiet_logger():
    import logging

    logger = logging.getLogger("kafka_broker.probe")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def java_string_hash(text: str) -> int:
    """Java's String.hashCode() (UTF-16 code units), as a signed 32-bit int."""
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def coordinator_partition(group: str, partitions: int) -> int:
    """Which __consumer_offsets partition holds `group` (Kafka: Utils.abs(hashCode) % n)."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def warm_group_coordinator(bootstrap: str, timeout: float = WARM_TIMEOUT) -> bool | None:
    """Wait until every __consumer_offsets partition has a loaded group coordinator.

    librdkafka 2.16's AdminClient crashes the whole process (SIGSEGV, librdkafka issue
    #5040) when an OffsetFetch answer says NOT_COORDINATOR, which a fresh broker does
    while __consumer_offsets is created and loaded. DescribeGroups handles that error, so
    describe one group per coordinator partition until all answer. None when
    confluent_kafka is not importable; False on timeout.
    """
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return None
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": quiet_logger(), "log_level": 0})
    names = ["lagmon-warmup-0"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = True
        for future in admin.describe_consumer_groups(names, request_timeout=5).values():
            try:
                future.result(timeout=10)
            except Exception:
                ok = False
        try:
            md = admin.list_topics(timeout=5).topics.get("__consumer_offsets")
        except KafkaException:
            md = None
        if md is not None and md.error is None and md.partitions:
            count = len(md.partitions)
            wanted: dict[int, str] = {}
            for i in range(100 * count):
                name = f"lagmon-warmup-{i}"
                wanted.setdefault(coordinator_partition(name, count), name)
                if len(wanted) == count:
                    break
            if ok and set(names) == set(wanted.values()):
                return True
            names = sorted(wanted.values())
        time.sleep(0.2)
    return False

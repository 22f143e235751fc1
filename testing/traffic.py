"""Kafka traffic and the truth to judge lagmon by, for tests, benchmarks and demos.

Producers and consumers that make a group lag in a known way, the true lag of a group read
straight from Kafka (Truth, TruthRecorder), and small tools around lagmon's report file.
Everything here is bounded in time and count, and talks only to the given broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 30.0) -> None:
    a = admin(bootstrap)  # keep the client alive while its futures are pending
    futures = a.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=timeout)
    futures[topic].result(timeout)
    # Wait until every partition has a leader (bounded).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = a.list_topics(topic, timeout=5).topics.get(topic)
        if (
            md is not None
            and md.error is None
            and len(md.partitions) == partitions
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topic {topic} not ready within {timeout}s")


def read_report(path: Path) -> dict | None:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def entry(report: dict | None, group: str, topic: str) -> dict | None:
    """The consumers[] entry of (group, topic) in a lag report, or None."""
    for c in (report or {}).get("consumers", []):
        if c["group_id"] == group and c["topic"] == topic:
            return c
    return None


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll predicate until it returns a truthy value (bounded); return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout}s")


class SteadyProducer(threading.Thread):
    """Produces to every partition of a topic at `rate` messages/second (round robin)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: float):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic, self.partitions, self.rate = topic, partitions, rate
        self.stop_event = threading.Event()
        self.paused = threading.Event()
        self.sent = 0

    def run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            if not self.paused.is_set():
                self.producer.produce(self.topic, b"x" * 64, partition=self.sent % self.partitions)
                self.sent += 1
                self.producer.poll(0)
            next_at += period
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        self.producer.flush(10)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(15)


class LagConsumer(threading.Thread):
    """A real consumer in a group that processes each message `delay` seconds after its
    timestamp (0 = keep up), at most `max_rate` messages/second (0 = unlimited), and
    commits what it processed every 0.5 s."""

    def __init__(self, bootstrap: str, group: str, topic: str, *, delay: float = 0.0, max_rate: float = 0.0):
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 500,
                "enable.auto.offset.store": False,
                "session.timeout.ms": 6000,
            }
        )
        self.consumer.subscribe([topic])
        self.delay, self.max_rate = delay, max_rate
        self.stop_event = threading.Event()
        self.processed = 0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                msg = self.consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                due = msg.timestamp()[1] / 1000.0 + self.delay
                if self.stop_event.wait(max(0.0, due - time.time())):
                    break
                if self.max_rate:
                    time.sleep(1.0 / self.max_rate)
                self.consumer.store_offsets(message=msg)
                self.processed += 1
        finally:
            self.consumer.close()  # commits the stored offsets

    def stop(self) -> None:
        self.stop_event.set()
        self.join(20)


class Truth:
    """The true lag of a group on a topic: the age of the message at each committed offset."""

    def __init__(self, bootstrap: str):
        self.admin = admin(bootstrap)
        self.reader = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique("truth"),
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self._times: dict[tuple[str, int, int], float] = {}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        fut = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        return {
            tp.partition: tp.offset
            for tp in fut.result(10).topic_partitions
            if tp.topic == topic and tp.offset >= 0
        }

    def heads(self, topic: str, partitions) -> dict[int, int]:
        futs = self.admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions})
        return {tp.partition: f.result(10).offset for tp, f in futs.items()}

    def message_time(self, topic: str, partition: int, offset: int) -> float:
        key = (topic, partition, offset)
        if key not in self._times:
            self._times[key] = self._read_time(topic, partition, offset)
        return self._times[key]

    def _read_time(self, topic: str, partition: int, offset: int) -> float:
        self.reader.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = self.reader.poll(0.5)
            if msg is not None and not msg.error() and (msg.topic(), msg.partition()) == (topic, partition):
                return msg.timestamp()[1] / 1000.0
        raise TimeoutError(f"no message at {topic}[{partition}]@{offset}")

    def lag(self, group: str, topic: str, now: float | None = None) -> float:
        """max over partitions of now - timestamp(message at committed offset); 0 if caught up."""
        committed = self.committed(group, topic)
        heads = self.heads(topic, committed)
        now = time.time() if now is None else now
        worst = 0.0
        for p, c in committed.items():
            if c < heads[p]:
                worst = max(worst, now - self.message_time(topic, p, c))
        return worst

    def close(self) -> None:
        try:
            self.reader.close()
        except KafkaException:
            pass


class TruthRecorder(threading.Thread):
    """Records the true lag of (group, topic) pairs every `period` seconds, so a report can be
    judged against the truth over the window its data covers (its staleness), not only at the
    instant it is read."""

    def __init__(self, bootstrap: str, pairs, period: float = 0.2):
        super().__init__(daemon=True)
        self.truth = Truth(bootstrap)
        self.pairs: list[tuple[str, str]] = list(pairs)
        self.period = period
        self.samples: dict[tuple[str, str], list[tuple[float, float]]] = {p: [] for p in self.pairs}
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def add(self, pair) -> None:
        with self.lock:
            self.pairs.append(pair)
            self.samples.setdefault(pair, [])

    def run(self) -> None:
        while not self.stop_event.wait(self.period):
            with self.lock:
                pairs = list(self.pairs)
            for pair in pairs:
                t = time.time()
                try:
                    lag = self.truth.lag(pair[0], pair[1], now=t)
                except (KafkaException, TimeoutError, KeyError):
                    continue
                with self.lock:
                    self.samples[pair].append((t, lag))

    def window(self, pair, start: float, end: float) -> tuple[float, float] | None:
        """(min, max) of the true lag over [start, end], including the last sample before start."""
        with self.lock:
            samples = list(self.samples[pair])
        inside = [lag for t, lag in samples if start <= t <= end]
        before = [lag for t, lag in samples if t < start]
        if before:
            inside.append(before[-1])
        return (min(inside), max(inside)) if inside else None

    def error(self, pair, reported: float, start: float, end: float) -> float | None:
        """Distance from a reported lag to the truth's range over [start, end]."""
        rng = self.window(pair, start, end)
        if rng is None:
            return None
        lo, hi = rng
        return max(0.0, lo - reported, reported - hi)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)
        self.truth.close()

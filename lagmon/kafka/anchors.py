"""Message-timestamp reads (the anchors of time lag): a mixin of KafkaClient.

A Consumer is created lazily, only to read messages' timestamps, with assign() and no
commits, so it never forms a visible group.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from lagmon.kafka.errors import NOT_CONNECTED
from lagmon.kafka.unavailable import KafkaUnavailable

# The message_time consumer needs a group.id (confluent-kafka refuses a Consumer without one)
# but it only assign()s and never commits, so no group of this name appears on the broker.
ANCHOR_GROUP_ID = "lagmon-anchor-reader"

Key = tuple[str, int, int]  # (topic, partition, offset)
Found = tuple[int, float] | None  # (offset read, timestamp in epoch seconds)


class AnchorReads:
    """message_time / message_times for KafkaClient, which provides the attributes below."""

    timeout: float
    requests: int
    _bootstrap: str
    _consumer: Consumer | None
    _auth_error: KafkaError | None

    if TYPE_CHECKING:  # provided by KafkaClient

        def _config(self) -> dict[str, Any]: ...
        def _scrub(self, text: str) -> str: ...
        def _answered(self) -> None: ...
        def _auth_failure(self, what: str) -> KafkaUnavailable: ...
        def _unavailable(self, what: str, exc: BaseException | None) -> KafkaUnavailable: ...
        def _issue_list_offsets(
            self, keys: list[tuple[str, int]], spec: OffsetSpec, what: str, deadline: float | None = None
        ) -> dict: ...
        def _collect_offsets(self, futures: dict, what: str, deadline: float | None = None) -> dict: ...

    def message_time(self, topic: str, partition: int, offset: int) -> Found:
        """(offset read, its timestamp in epoch seconds) of the message at `offset`, or of the
        next available one when `offset` is below the log start; None when the partition has
        no message at or after `offset` (or the message carries no timestamp)."""
        key = (str(topic), int(partition), int(offset))
        return self.message_times([key]).get(key)

    def message_times(
        self, wanted: Iterable[Key], *, budget: float | None = None, deadline: float | None = None
    ) -> dict[Key, Found]:
        """message_time for many (topic, partition, offset) at once: one batched look-up of the
        log bounds, then every partition assigned together, so the fetches go out per broker in
        parallel. A partition asked for several offsets takes one round per offset. Keys not
        answered within `budget` seconds (default: the request timeout), or by `deadline`
        (time.monotonic()) if that comes first, are left out; the budget covers the two log-bounds
        look-ups too (both in flight at once)."""
        keys = sorted({(str(t), int(p), int(o)) for t, p, o in wanted})
        if not keys:
            return {}
        own = time.monotonic() + (self.timeout if budget is None else budget)
        deadline = own if deadline is None else min(own, deadline)
        if time.monotonic() >= deadline:
            return {}
        parts = sorted({(t, p) for t, p, _ in keys})
        what = f"reading message timestamps on {len(parts)} partitions"
        lows = self._issue_list_offsets(parts, OffsetSpec.earliest(), what, deadline)
        highs = self._issue_list_offsets(parts, OffsetSpec.latest(), what, deadline)
        try:
            earliest = self._collect_offsets(lows, what, deadline)
            latest = self._collect_offsets(highs, what, deadline)
        except KafkaUnavailable as exc:
            if exc.kind != "timeout" or time.monotonic() < deadline:
                raise  # unreachable, refused, or failed before the budget ran out: an outage
            # The budget ran out on the log bounds (a big batch, a short interval): no anchor
            # is read, and every key is left for a later sample, as a late message read is.
            return {}
        result: dict[Key, Found] = {}
        pending: dict[tuple[str, int], list[tuple[int, int]]] = {}  # partition -> [(start, offset asked)]
        for t, p, o in keys:
            lo, hi = earliest.get((t, p)), latest.get((t, p))
            if isinstance(lo, BaseException) or isinstance(hi, BaseException) or lo is None or hi is None:
                result[(t, p, o)] = None  # e.g. the topic or partition no longer exists
                continue
            begin = max(o, lo.offset)
            if begin >= hi.offset:
                result[(t, p, o)] = None
            else:
                pending.setdefault((t, p), []).append((begin, o))
        consumer = self._anchor_consumer()
        while pending and time.monotonic() < deadline:
            round_ = {tp: starts.pop(0) for tp, starts in pending.items()}
            pending = {tp: starts for tp, starts in pending.items() if starts}
            self.requests += 1
            consumer.assign([TopicPartition(t, p, begin) for (t, p), (begin, _o) in round_.items()])
            try:
                for tp, found in self._read_many(consumer, round_, deadline, what).items():
                    result[(tp[0], tp[1], round_[tp][1])] = found
            finally:
                consumer.unassign()
        return result

    def _anchor_consumer(self) -> Consumer:
        if self._consumer is None:
            config = self._config()
            config.update(
                {
                    "group.id": ANCHOR_GROUP_ID,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_uncommitted",
                    "fetch.wait.max.ms": 10,  # short: a pending long-poll fetch delays the next assign()
                    "max.partition.fetch.bytes": 4096,  # one message is wanted; a bigger one still comes
                    "queued.max.messages.kbytes": 1024,
                }
            )
            try:
                self._consumer = Consumer(config)
            except (KafkaException, ValueError, TypeError) as exc:
                raise KafkaUnavailable(
                    self._scrub(f"kafka consumer for {self._bootstrap} could not be created: {exc}"),
                    kind="error",
                ) from None
        return self._consumer

    def _read_many(
        self, consumer: Consumer, starts: dict[tuple[str, int], tuple[int, int]], deadline: float, what: str
    ) -> dict[tuple[str, int], Found]:
        """The first message at or after each partition's start: {(topic, partition): (offset, ts) | None}.
        What has not come by the deadline is left out (read at a later sample): the broker has
        answered the log-bounds look-ups just before, so running out of the budget on a big read
        (a first start on many partitions) is not an outage, and must not fail the sample."""
        found: dict[tuple[str, int], Found] = {}
        while len(found) < len(starts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return found
            for msg in consumer.consume(num_messages=max(1, len(starts)), timeout=min(0.2, remaining)):
                if self._auth_error is not None:
                    raise self._auth_failure(what)
                topic, partition = msg.topic(), msg.partition()
                if topic is None or partition is None:
                    continue  # a client-level event, not a partition's message (never in `starts`)
                key = (topic, partition)
                if key not in starts or key in found:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        found[key] = None  # only control records (transaction markers) were left
                    elif err.code() not in NOT_CONNECTED:
                        raise KafkaUnavailable(
                            self._scrub(f"kafka at {self._bootstrap}: {what} failed: {err.str()}"),
                            kind="error",
                        )
                    continue
                offset = msg.offset()
                if offset is None or offset < starts[key][0]:
                    continue
                self._answered()
                ts_type, ts_ms = msg.timestamp()
                ok = ts_type != TIMESTAMP_NOT_AVAILABLE and ts_ms >= 0
                found[key] = (offset, ts_ms / 1000.0) if ok else None
            if self._auth_error is not None:
                raise self._auth_failure(what)
        return found

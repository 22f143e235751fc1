"""What the sampler needs from a Kafka client: KafkaClient, IsolatedKafkaClient and the
test stand-ins all satisfy KafkaSource (checked by mypy, not at run time)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class KafkaSource(Protocol):
    def topics(self) -> dict[str, int]:
        """topic -> partition count."""
        ...

    def groups(self) -> tuple[set[str], bool]:
        """(group ids, complete)."""
        ...

    def committed(
        self, groups: Iterable[str]
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        """({group: {(topic, partition): offset}}, {group: error text})."""
        ...

    def heads(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """(topic, partition) -> high watermark; failed partitions omitted."""
        ...

    def heads_and_log_starts(
        self, partitions: Iterable[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """(heads as heads() gives them, (topic, partition) -> log start offset)."""
        ...

    def message_times(
        self, wanted: Iterable[tuple[str, int, int]], *, budget: float | None = None
    ) -> dict[tuple[str, int, int], tuple[int, float] | None]:
        """(topic, partition, offset) -> (offset read, timestamp in epoch seconds) or None."""
        ...

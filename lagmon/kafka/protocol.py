"""What the sampler needs from a Kafka client: KafkaClient, IsolatedKafkaClient and the
test stand-ins all satisfy KafkaSource (checked by mypy, not at run time)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class KafkaSource(Protocol):
    # `deadline` is a time.monotonic() instant no call waits past (the sample's deadline).

    def topics(self, *, deadline: float | None = None) -> tuple[dict[str, int], set[str]]:
        """({topic: partition count}, {topics whose metadata carried an error: unknown for now})."""
        ...

    def groups(self, *, deadline: float | None = None) -> tuple[set[str], bool]:
        """(group ids, complete)."""
        ...

    def committed(
        self, groups: Iterable[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        """({group: {(topic, partition): offset}}, {group: error text})."""
        ...

    def heads(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> dict[tuple[str, int], int]:
        """(topic, partition) -> high watermark; failed partitions omitted."""
        ...

    def heads_and_log_starts(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """(heads as heads() gives them, (topic, partition) -> log start offset)."""
        ...

    def message_times(
        self,
        wanted: Iterable[tuple[str, int, int]],
        *,
        budget: float | None = None,
        deadline: float | None = None,
    ) -> dict[tuple[str, int, int], tuple[int, float] | None]:
        """(topic, partition, offset) -> (offset read, timestamp in epoch seconds) or None."""
        ...

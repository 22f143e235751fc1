"""A deterministic stand-in Kafka cluster on a simulated clock, answering like
lagmon.kafka.KafkaClient, for the housekeeping tests (tests/test_housekeeping.py).

The simulated cluster has 200 partitions:
  orders   8 partitions, busy, hourly-varying rates with idle hours; consumed by
           `billing` (keeps up) and `archiver` (stops for good on day 1)
  clicks   8 partitions: 4 slow (a message every few minutes), 4 idle; consumed by
           `analytics` (keeps up) and `ghost` (disappears from the cluster after 12 h)
  flaky    4 partitions, consumed by `flapper` (works 20 min, pauses 45 min, repeat)
  bulk-*   180 partitions nobody consumes: idle, a burst on day 0 then idle, or a
           trickle every few hours (sampled at the offline interval, like the real sampler)
Only the 20 consumed partitions change every sample; that keeps the thinning work (and
the test) under a minute while the table holds 200 partitions' histories.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lagmon.kafka import KafkaSource

T0 = 1_700_000_000.0
MIN, HOUR, DAY = 60.0, 3600.0, 86_400.0
WEEK_HOURS = 7 * 24 + 2

ARCHIVER_OFF = T0 + DAY + 7 * MIN  # the archiver's last commit
GHOST_GONE = T0 + 12 * HOUR  # the ghost group's last appearance in the cluster


# --------------------------------------------------------------------------- simulated cluster


class SimPartition:
    """A partition whose message rate is constant within each hour: head(t) and, exactly,
    the append time of any offset (the truth the reported lag is compared with)."""

    def __init__(self, rates: list[float], base: int = 0):
        self.rates = list(rates)
        self.base = base
        self.cum = [0.0]
        for r in self.rates:
            self.cum.append(self.cum[-1] + r * HOUR)

    def count(self, t: float) -> float:
        x = (t - T0) / HOUR
        if x <= 0:
            return 0.0
        h = min(int(x), len(self.rates) - 1)
        return self.cum[h] + self.rates[h] * (t - T0 - h * HOUR)

    def head(self, t: float) -> int:
        return self.base + math.floor(self.count(t) + 1e-9)

    def append_time(self, offset: int) -> float:
        """When the message at `offset` was appended (the head went from offset to offset + 1)."""
        n = offset - self.base + 1
        h = bisect.bisect_left(self.cum, n) - 1
        return T0 + h * HOUR + (n - self.cum[h]) / self.rates[h]


def busy_rates(rng: random.Random) -> list[float]:
    base = rng.uniform(0.5, 20.0)
    out = []
    for h in range(WEEK_HOURS):
        diurnal = 1.0 + 0.8 * math.sin(2 * math.pi * (h % 24) / 24 + rng.uniform(-0.3, 0.3))
        out.append(0.0 if rng.random() < 0.08 else base * diurnal * rng.uniform(0.5, 1.5))
    return out


def slow_rates(rng: random.Random) -> list[float]:
    every = rng.uniform(90.0, 240.0)  # one message every 1.5-4 minutes on average
    return [0.0 if rng.random() < 0.2 else rng.uniform(0.5, 1.5) / every for _ in range(WEEK_HOURS)]


class Consumer:
    """A group's committed offsets: `delay` seconds behind the head while working."""

    def __init__(
        self,
        topic: str,
        delay: float,
        *,
        stops_at: float | None = None,
        flap: tuple[float, float] | None = None,
        gone_at: float | None = None,
    ):
        self.topic, self.delay, self.stops_at, self.flap, self.gone_at = topic, delay, stops_at, flap, gone_at

    def listed(self, now: float) -> bool:
        return self.gone_at is None or now < self.gone_at

    def position_time(self, now: float) -> float:
        """The time whose head the group has consumed up to."""
        t = now - self.delay
        if self.stops_at is not None:
            t = min(t, self.stops_at - self.delay)
        if self.flap is not None:
            work, pause = self.flap
            phase = (now - T0) % (work + pause)
            if phase >= work:  # paused since the end of this cycle's work window
                t = now - (phase - work) - self.delay
        return t


class SimCluster:
    """Answers like lagmon.kafka.KafkaClient at the simulated time `self.now`
    (message_time/message_times: the exact append time of the message at an offset)."""

    def __init__(self, seed: int = 7):
        rng = random.Random(seed)
        self.now = T0
        self.requests = 0
        self.parts: dict[str, list[SimPartition]] = {
            "orders": [SimPartition(busy_rates(rng), rng.randrange(10**6)) for _ in range(8)],
            "clicks": [SimPartition(slow_rates(rng)) for _ in range(4)]
            + [SimPartition([0.0] * WEEK_HOURS, rng.randrange(500)) for _ in range(4)],
            "flaky": [SimPartition(busy_rates(rng)) for _ in range(4)],
        }
        for b in range(9):
            parts = []
            for _ in range(20):
                kind = rng.random()
                if kind < 0.5:
                    rates = [0.0] * WEEK_HOURS  # idle
                elif kind < 0.8:
                    rates = [rng.uniform(1, 50)] * 3 + [0.0] * (WEEK_HOURS - 3)  # day-0 burst
                else:
                    rates = [1 / (rng.uniform(3, 8) * HOUR)] * WEEK_HOURS  # trickle
                parts.append(SimPartition(rates, rng.randrange(10**5)))
            self.parts[f"bulk-{b}"] = parts
        self.groups_: dict[str, Consumer] = {
            "billing": Consumer("orders", 5.0),
            "archiver": Consumer("orders", 30.0, stops_at=ARCHIVER_OFF),
            "analytics": Consumer("clicks", 20.0),
            "ghost": Consumer("clicks", 40.0, gone_at=GHOST_GONE),
            "flapper": Consumer("flaky", 10.0, flap=(20 * MIN, 45 * MIN)),
        }

    def partition_count(self) -> int:
        return sum(len(p) for p in self.parts.values())

    # --- the KafkaClient interface used by the sampler
    def topics(self, *, deadline: float | None = None) -> tuple[dict[str, int], set[str]]:
        self.requests += 1
        return {t: len(p) for t, p in self.parts.items()}, set()

    def groups(self, *, deadline: float | None = None) -> tuple[set[str], bool]:
        self.requests += 1
        return {g for g, c in self.groups_.items() if c.listed(self.now)}, True

    def committed(
        self, groups: Iterable[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        out = {}
        for g in groups:
            self.requests += 1
            c = self.groups_.get(g)
            if c is None or not c.listed(self.now):
                continue
            at = c.position_time(self.now)
            out[g] = {(c.topic, p): sp.head(at) for p, sp in enumerate(self.parts[c.topic])}
        return out, {}

    def heads(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> dict[tuple[str, int], int]:
        self.requests += 1
        return {(t, p): self.parts[t][p].head(self.now) for t, p in partitions}

    def message_time(self, topic: str, partition: int, offset: int) -> tuple[int, float] | None:
        self.requests += 1
        sp = self.parts[topic][partition]
        if offset >= sp.head(self.now):
            return None
        return offset, sp.append_time(offset)

    def message_times(
        self,
        wanted: Iterable[tuple[str, int, int]],
        *,
        budget: float | None = None,
        deadline: float | None = None,
    ) -> dict[tuple[str, int, int], tuple[int, float] | None]:
        return {(t, p, o): self.message_time(t, p, o) for t, p, o in wanted}

    def close(self):
        pass

    def heads_and_log_starts(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        partitions = list(partitions)
        return self.heads(partitions, deadline=deadline), {
            (t, p): self.parts[t][p].base for t, p in partitions
        }

    # --- the truth
    def true_lag(self, group: str, now: float) -> float:
        c = self.groups_[group]
        at = c.position_time(now)
        worst = 0.0
        for sp in self.parts[c.topic]:
            committed = sp.head(at)
            if committed < sp.head(now):
                worst = max(worst, now - sp.append_time(committed))
        return worst


if TYPE_CHECKING:  # mypy: the stand-in answers like the real client
    _: KafkaSource = SimCluster()

"""Simulated head histories for the timelag tests: every message's true append time is known."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import strategies as st

from tests import oracles
from tests.oracles import PartitionLag, history_bracket, partition_lag

T0 = 1_700_000_000.0


@dataclass
class History:
    base: int  # head at the first sample: messages < base were appended before it
    samples: list[float]  # sample times, strictly increasing
    msg_times: list[float]  # append time of message base + i
    rows: list[tuple[int, float, float]]  # collapsed head rows, oldest first

    @property
    def newest(self) -> int:
        return self.rows[-1][0]

    def true_time(self, c: int) -> float:
        return self.msg_times[c - self.base]


def build_history(base: int, samples: list[float], msg_times: list[float]) -> History:
    rows: list[list] = []
    i = 0
    for s in samples:
        while i < len(msg_times) and msg_times[i] <= s:
            i += 1
        head = base + i
        if rows and rows[-1][0] == head:
            rows[-1][2] = s
        else:
            rows.append([head, s, s])
    return History(base, samples, msg_times, [tuple(r) for r in rows])


@st.composite
def histories(draw, max_samples: int = 25, max_burst: int = 20) -> History:
    base = draw(st.integers(0, 10_000))
    n = draw(st.integers(1, max_samples))
    gaps = draw(st.lists(st.floats(0.5, 7200.0), min_size=n - 1, max_size=n - 1))
    samples = [T0]
    for g in gaps:
        samples.append(samples[-1] + g)
    rnd = draw(st.randoms(use_true_random=False))
    msg_times: list[float] = []
    for lo, hi in zip(samples, samples[1:], strict=False):
        burst = draw(st.sampled_from([0, 0, 1, 2, 5, max_burst]))
        after = math.nextafter(lo, math.inf)  # appended strictly after sample lo, at or before hi
        msg_times.extend(sorted(max(after, lo + (hi - lo) * (1.0 - rnd.random())) for _ in range(burst)))
    return build_history(base, samples, msg_times)


def lag_input(rows, c, *, anchors=(), commit_first=None, commit_last=None, partition=0):
    """The LagInput the store would build from a whole history (via history_bracket)."""
    b = history_bracket(rows, list(anchors), c)
    last = rows[-1][2] if rows else T0
    return oracles.lag_input(
        b,
        c,
        partition=partition,
        commit_first_seen=last - 60.0 if commit_first is None else commit_first,
        commit_last_seen=last if commit_last is None else commit_last,
    )


def lag(rows, c, now, **kw) -> PartitionLag:
    res = partition_lag(lag_input(rows, c, **kw), now)
    assert res is not None
    return res


def offsets_to_probe(h: History) -> range:
    return range(max(0, h.base - 3), h.newest + 3)


def sane(p: PartitionLag) -> None:
    assert math.isfinite(p.seconds) and p.seconds >= 0
    assert math.isfinite(p.at)

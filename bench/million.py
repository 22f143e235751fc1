"""A million group-partitions, simulated: seconds per sample and µs per group-partition.

    .venv/bin/python -m bench.million [--sizes 10k,100k,1M] [--samples 5] [--profile 100k]

The cluster is a scripted client standing in for Kafka (it satisfies
lagmon.kafka.KafkaSource and answers from dicts in memory); everything else is real: the
REAL lagmon.stages.sampler.Sampler, a real Store on a real SQLite file (under
$TMPDIR/lagmon-bench) and the real time-lag math and state machine.

Shape: the sampler-cost cluster (bench/sampler_cost.py) scaled. Every group commits on
2 topics x 10 partitions (20 group-partitions per group), there are 20 partitions per topic
and two partitions per group, so a size of N group-partitions is N/20 groups and N/10
partitions (N/200 topics x 20 partitions):

    10k  =    500 groups,  1,000 partitions (   50 topics)
    100k =  5,000 groups, 10,000 partitions (  500 topics)
    1M   = 50,000 groups, 100,000 partitions (5,000 topics)

Every sample every head advances (1 to 5 messages per simulated 10 s interval) and every
group commits the head of the previous sample, so every commit moves and every group/topic
stays ONLINE and due: the most work a sample can have. The simulated clock advances
10 s per sample; the sampler is stamped with it.

Each size runs in a fresh child process (so its peak RSS is its own, ru_maxrss of that
child): one warm-up sample on the fresh database (every row new; reported on its own),
then --samples steady-state samples whose median is reported. "client s" is the time spent
inside the scripted client's calls (building the answers: the stand-in for the network),
"lagmon s" the rest of the step: the sampler's own Python and SQLite work, which the goal
is about (under 10 µs per group-partition, i.e. under 10 s per sample at 1M).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bench import common
from bench.common import fmt, table, verdict
from lagmon import config as lagconfig
from lagmon.kafka import KafkaSource
from lagmon.stages.sampler import Sampler
from lagmon.store import Store
from testing.stages import write_config

T0 = 1_700_000_000.0
INTERVAL = 10.0  # simulated seconds between samples
PER_GROUP = 20  # 2 topics x 10 partitions
PARTITIONS_PER_TOPIC = 20
GOAL_US = 10.0  # µs per group-partition (10 s per sample at 1M)
SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000}
DEFAULT_SAMPLES = {"10k": 5, "100k": 5, "1M": 2}
CHILD_TIMEOUT = 3600.0


class SimKafka:
    """A cluster in memory: `groups` groups, each on 2 topics x 10 partitions. advance() is
    one simulated interval: every head moves by 1-5 messages, every group commits the heads
    of the previous sample. Calls are timed (self.spent) so the step's own cost can be told
    from the stand-in's."""

    def __init__(self, groups: int):
        topics = max(2, groups * 2 // PARTITIONS_PER_TOPIC)  # two partitions per group
        self.topic_names = [f"t{i:05d}" for i in range(topics)]
        self.group_names = [f"g{i:06d}" for i in range(groups)]
        self.step_of = {
            (t, p): 1 + (i * 7 + p) % 5
            for i, t in enumerate(self.topic_names)
            for p in range(PARTITIONS_PER_TOPIC)
        }
        self.base = {tp: 1_000 + (i * 7919) % 1000 for i, tp in enumerate(self.step_of)}
        self.head = {tp: self.base[tp] + 400 * s for tp, s in self.step_of.items()}
        self.assign: dict[str, list[tuple[str, int]]] = {}
        n, half = len(self.topic_names), PARTITIONS_PER_TOPIC // 2
        for i, g in enumerate(self.group_names):
            first = (i // n) % 2 * half
            ts = [self.topic_names[i % n], self.topic_names[(i + 37) % n]]
            self.assign[g] = [(t, p) for t in dict.fromkeys(ts) for p in range(first, first + half)]
        self.commit = {tp: h for tp, h in self.head.items()}  # what groups commit: the previous heads
        self.now = T0
        self.spent = 0.0
        self.anchor_reads = 0

    def pairs(self) -> int:
        return sum(len(v) for v in self.assign.values())

    def advance(self) -> None:
        self.commit = dict(self.head)
        self.head = {tp: h + self.step_of[tp] for tp, h in self.head.items()}
        self.now += INTERVAL

    def append_time(self, tp: tuple[str, int], offset: int) -> float:
        """The simulated time the message at offset was appended (heads move linearly)."""
        s = self.step_of[tp]
        return T0 - 400 * INTERVAL + (offset - self.base[tp]) / s * INTERVAL

    # --- KafkaSource
    def topics(self, *, deadline: float | None = None) -> tuple[dict[str, int], set[str]]:
        t = time.perf_counter()
        out = dict.fromkeys(self.topic_names, PARTITIONS_PER_TOPIC)
        self.spent += time.perf_counter() - t
        return out, set()

    def groups(self, *, deadline: float | None = None) -> tuple[set[str], bool]:
        t = time.perf_counter()
        out = set(self.group_names)
        self.spent += time.perf_counter() - t
        return out, True

    def committed(
        self, groups: Iterable[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        t = time.perf_counter()
        c = self.commit
        out = {g: {tp: c[tp] for tp in self.assign[g]} for g in groups if g in self.assign}
        self.spent += time.perf_counter() - t
        return out, {}

    def heads(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> dict[tuple[str, int], int]:
        t = time.perf_counter()
        h = self.head
        out = {tp: h[tp] for tp in partitions if tp in h}
        self.spent += time.perf_counter() - t
        return out

    def heads_and_log_starts(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        heads = self.heads(partitions, deadline=deadline)
        t = time.perf_counter()
        starts = {tp: self.base[tp] for tp in heads}  # nothing is deleted by retention
        self.spent += time.perf_counter() - t
        return heads, starts

    def message_times(
        self,
        wanted: Iterable[tuple[str, int, int]],
        *,
        budget: float | None = None,
        deadline: float | None = None,
    ) -> dict[tuple[str, int, int], tuple[int, float] | None]:
        t = time.perf_counter()
        out: dict[tuple[str, int, int], tuple[int, float] | None] = {}
        for topic, p, o in wanted:
            self.anchor_reads += 1
            out[(topic, p, o)] = (o, self.append_time((topic, p), o)) if o < self.head[(topic, p)] else None
        self.spent += time.perf_counter() - t
        return out


if TYPE_CHECKING:  # mypy: the stand-in answers like the real client
    _: KafkaSource = SimKafka(1)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def run_size(label: str, pairs: int, samples: int, profile: bool, workdir: Path) -> dict:
    """One size in this process: warm-up + `samples` steady-state samples."""
    groups = max(1, pairs // PER_GROUP)
    t_setup = time.perf_counter()
    kafka = SimKafka(groups)
    cfg_path = write_config(
        workdir,
        fast=False,
        monitoring={
            "sample_interval_seconds": INTERVAL,
            "offline_sample_interval_seconds": 10 * INTERVAL,
            "online_lag_threshold_seconds": 60,
        },
    )
    cfg = lagconfig.load(str(cfg_path))
    store = Store(cfg.database.path)
    sampler = Sampler(cfg, store, kafka, logging.getLogger("bench.million"), clock=lambda: kafka.now)
    setup = time.perf_counter() - t_setup

    def one() -> dict:
        kafka.advance()
        kafka.spent = 0.0
        t = time.perf_counter()
        sampler.step(kafka.now)
        wall = time.perf_counter() - t
        return {"wall": wall, "client": kafka.spent, "partitions": sampler.last_result.partitions}

    warm = one()
    steady = [one() for _ in range(samples)]
    prof_text = None
    if profile:
        prof = cProfile.Profile()
        for _ in range(max(1, min(3, samples))):
            kafka.advance()
            prof.enable()
            sampler.step(kafka.now)
            prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
        prof_text = "\n".join(line for line in out.getvalue().splitlines() if line.strip())
    statuses = store.group_statuses()
    online = sum(s.state == "online" for s in statuses.values())
    db_bytes = sum(os.path.getsize(p) for p in Path(workdir).glob("state.db*"))
    store.close()
    return {
        "label": label,
        "pairs": kafka.pairs(),
        "groups": groups,
        "partitions": len(kafka.head),
        "group_topics": len(statuses),
        "online": online,
        "setup": setup,
        "warm": warm,
        "samples": steady,
        "anchors": kafka.anchor_reads,
        "db_mb": db_bytes / 1e6,
        "rss_mb": rss_mb(),
        "profile": prof_text,
    }


def child(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    label = args.child
    with tempfile.TemporaryDirectory(prefix=f"million-{label}-", dir=common.BENCH_TMP) as tmp:
        r = run_size(
            label, SIZES[label], args.samples or DEFAULT_SAMPLES[label], args.profile == label, Path(tmp)
        )
    print(json.dumps(r))
    return 0


def parse_sizes(text: str) -> list[str]:
    out = []
    for word in text.split(","):
        word = word.strip()
        if word not in SIZES:
            raise SystemExit(f"bench.million: --sizes: {word!r} is not one of {', '.join(SIZES)}")
        out.append(word)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k,1M", help="comma-separated, from: 10k, 100k, 1M")
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="steady-state samples per size (default 5 at 10k and 100k, 2 at 1M: a 1M sample takes minutes on 2 busy cores)",
    )
    parser.add_argument("--profile", default=None, help="cProfile 3 more samples at this size (e.g. 100k)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.samples is not None and not 1 <= args.samples <= 50:
        raise SystemExit("bench.million: --samples must be between 1 and 50")
    common.BENCH_TMP.mkdir(parents=True, exist_ok=True)
    if args.child:
        return child(args)
    sizes = parse_sizes(args.sizes)
    if args.profile is not None and args.profile not in sizes:
        raise SystemExit(f"bench.million: --profile {args.profile} is not among --sizes {args.sizes}")
    common.header("bench/million.py")
    print(
        "# shape: every group on 2 topics x 10 partitions, 20 partitions per topic; every head and "
        "every commit moves at every sample; scripted client, real Sampler, Store (SQLite file) and math",
        flush=True,
    )
    results = []
    for label in sizes:
        cmd = [sys.executable, "-m", "bench.million", "--child", label]
        if args.samples:
            cmd += ["--samples", str(args.samples)]
        if args.profile == label:
            cmd += ["--profile", label]
        t = time.monotonic()
        out = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        if out.returncode != 0:
            print(f"bench.million: size {label} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["elapsed"] = time.monotonic() - t
        results.append(r)
        s = r["samples"]
        print(
            f"# {label}: {r['pairs']:,} group-partitions ({r['groups']:,} groups, {r['partitions']:,} "
            f"partitions, {r['group_topics']:,} group/topics, {r['online']:,} online); "
            f"{len(s)} samples in {r['elapsed']:.0f} s",
            flush=True,
        )
    rows = []
    base_us = None
    for r in results:
        s = r["samples"]
        wall = statistics.median(x["wall"] for x in s)
        client = statistics.median(x["client"] for x in s)
        own = statistics.median(x["wall"] - x["client"] for x in s)
        us = own / r["pairs"] * 1e6
        base_us = base_us or us
        rows.append(
            (
                f"{r['label']} ({r['pairs']:,})",
                len(s),
                fmt(r["warm"]["wall"], 2),
                fmt(wall, 2),
                fmt(client, 2),
                fmt(own, 2),
                fmt(us, 1),
                f"{us / base_us:.2f}x",
                fmt(r["db_mb"], 0),
                fmt(r["rss_mb"], 0),
                f"{verdict(us <= GOAL_US)}",
            )
        )
    print(
        table(
            [
                "size (group-partitions)",
                "samples",
                "warm-up s",
                "sample s (median)",
                "client s",
                "lagmon s",
                "µs / group-partition",
                "vs smallest",
                "DB+WAL MB",
                "peak RSS MB",
                f"< {GOAL_US:.0f} µs",
            ],
            rows,
            title="Sample cost, simulated cluster (every commit moving)",
        )
    )
    print(
        "\nlagmon s = sample s - client s (the scripted client's time building its answers, the stand-in "
        "for the network); µs / group-partition = lagmon s / group-partitions. The goal: under "
        f"{GOAL_US:.0f} µs (10 s per sample at 1M), growth close to linear (vs smallest near 1.00x). "
        "warm-up = first sample on the fresh database (every row new). peak RSS = ru_maxrss of the "
        "child process that ran that size (scripted cluster included)."
    )
    for r in results:
        if r["profile"]:
            print(
                f"\ncProfile of 3 more samples at {r['label']} (top 25 by own time, then by cumulative time):\n"
            )
            print(r["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

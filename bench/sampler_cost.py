"""What one sample costs at 2,000 partitions and 1,000 groups, against the floor.

    .venv/bin/python -m bench.sampler_cost [--bootstrap HOST:PORT] [--prefix lagbench]
    .venv/bin/python -m bench.sampler_cost --scale 10 --prefix lagbench10   # issue 14's 10x

--scale N multiplies the topics and the groups (10: 20,000 partitions x 10,000 groups) and
judges a sample against 2x the floor, the sampler process against 200 MB and a report against
1 s; it takes 3 samples and no full-history database unless --full-history. The local broker of
testing/broker.py does not hold 10x on the development machine: with its 512 MB heap it ran out
of memory at about 17,800 partitions, and with 3 GB it hit the container's limit of 20,000 open
files (a file per partition) and stopped; 5x (10,000 partitions, 5,000 groups) runs.

Cluster (on the benchmark's own broker, port 39092, unless --bootstrap): 100 topics of 20
partitions (2,000 partitions) and 1,000 groups, each committing on 2 topics x 10 partitions
(20,000 group-partition commits). Groups have no live consumer: their offsets are set with
AdminClient.alter_consumer_group_offsets, every group's future in flight at once. Topics and
groups named --prefix are reused if a previous run (with --keep-broker or --bootstrap) left
them.

Each iteration is what an active cluster looks like to the sampler: one message is produced
to every partition (every head advances) and every group commits the previous head (every
commit advances, so every group stays ONLINE and due), outside the timed region. Then, in
rotating order so that all see the same noise:

  sample  Sampler.step in-process, each with its own real Store on a temp file and a real Kafka
          client: "plain/new-db" (KafkaClient, empty database), "isolated/new-db" (the
          IsolatedKafkaClient processes/sampler.py uses, committed offsets fetched in a worker
          process) and ".../full-history" (the stage's client on a database prefilled with 300
          head rows per partition and 100 commit rows per group-partition: what a sampler that
          has run for hours holds, the housekeeper's limits). The target is judged on the last;
  floor   bare confluent_kafka with no processing and no database: list topics, list groups,
          every group's committed offsets in flight at once, one batched list_offsets of
          every partition -- the same requests a sample needs.

The first sample on a fresh database is the warm-up (every row is new; 50 commits set one
message below the head make it read 50 message timestamps, "anchors"); it is reported on
its own and left out of the medians. If a sample is over 1.5x the floor, 3 more samples
are profiled with cProfile. Memory: the real stage processes run once each
(`python -m processes.<stage> --config CFG --once`) against the same cluster, launched by
bench.peak_rss so that each one's peak RSS is its own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from bench import common
from bench.common import fmt, median, table, verdict
from lagmon import config as lagconfig
from lagmon.kafka import KafkaClient

try:  # the sampler stage runs committed() in a worker process when this exists
    from lagmon.kafka import IsolatedKafkaClient
except ImportError:
    IsolatedKafkaClient = None
from lagmon.stages.sampler import Sampler
from lagmon.store import Store
from testing.stages import write_config

INTERNAL = {"__consumer_offsets", "__transaction_state"}
ANCHORED_GROUPS = 50  # groups whose first partition commits head - 1 (anchors at warm-up)
HISTORY_HEADS = 300  # max_entries_per_partition default
HISTORY_COMMITS = 100  # max_commit_entries_per_partition default
TARGET_RATIO = 1.5
TARGET_RSS_MB = 100.0
SCALED_RATIO = 2.0  # --scale 10 (issue 14): within 2x the floor,
SCALED_RSS_MB = 200.0  # a sampler under 200 MB,
REPORT_SECONDS = 1.0  # and a report still under 1 s
SETUP_TIMEOUT = 300.0
PRODUCE_TIMEOUT = 60.0  # one message to every partition, an iteration outside the timed region
# The benchmark topics' index files. Kafka creates each segment's offset and time index as a sparse
# file of segment.index.bytes (10 MB by default) and memory-maps it; a partition's first index entry
# faults the mapping in, and the kernel reads ahead into the file's hole, zero-filling pages. On the
# development VM the disk reads ahead 8 MB (/sys/block/vda/queue/read_ahead_kb = 8192): 16 MB of
# memset per partition, about 20 ms of broker CPU, one partition after another on the producer's
# connection. The first iteration after fill_to is every partition's first index entry (fill_to writes
# a partition's messages in one batch), so with 10 MB indexes it took 40-60 s for 2,000 partitions
# and flush(60) left 400-870 messages undelivered (perf: 85% of the broker in zero_user_segments
# under filemap_fault). 64 KB holds 8,192 entries: far more than a 1 MB segment (testing/broker.py)
# needs at one entry per 4 KB (index.interval.bytes); a fuller index only rolls the segment.
INDEX_BYTES = 64 * 1024


# --------------------------------------------------------------------------- cluster


class Cluster:
    def __init__(self, bootstrap: str, prefix: str, topics: int, partitions: int, groups: int):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.topics = [f"{prefix}-t{i:03d}" for i in range(topics)]
        self.partitions = partitions
        self.groups = [f"{prefix}-g{i:04d}" for i in range(groups)]
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})

    def assignment(self, index: int) -> list[tuple[str, int]]:
        """Group `index` commits on 2 topics x half of their partitions."""
        n, half = len(self.topics), self.partitions // 2
        first = (index // n) % 2 * half
        topics = [self.topics[index % n], self.topics[(index + 37) % n]]
        return [(t, p) for t in topics for p in range(first, first + half)]

    def ensure_topics(self) -> int:
        existing = set(self.admin.list_topics(timeout=30).topics)
        missing = [t for t in self.topics if t not in existing]
        for i in range(0, len(missing), 100):  # a broker refuses too many partitions in one request
            futures = self.admin.create_topics(
                [
                    NewTopic(t, self.partitions, 1, config={"segment.index.bytes": str(INDEX_BYTES)})
                    for t in missing[i : i + 100]
                ],
                operation_timeout=60,
                request_timeout=60,
            )
            for f in futures.values():
                f.result(120)
        deadline = time.monotonic() + SETUP_TIMEOUT
        while time.monotonic() < deadline:  # every partition has a leader
            md = self.admin.list_topics(timeout=30).topics
            if all(
                t in md
                and md[t].error is None
                and len(md[t].partitions) == self.partitions
                and all(p.leader >= 0 for p in md[t].partitions.values())
                for t in self.topics
            ):
                return len(missing)
            time.sleep(0.5)
        raise TimeoutError("topics without a leader")

    def heads(self) -> dict[tuple[str, int], int]:
        """Every partition's head; retried (bounded) while new partitions' leaders settle."""
        deadline = time.monotonic() + SETUP_TIMEOUT
        while True:
            futures = self.admin.list_offsets(
                {
                    TopicPartition(t, p): OffsetSpec.latest()
                    for t in self.topics
                    for p in range(self.partitions)
                },
                request_timeout=60,
            )
            try:
                return {(tp.topic, tp.partition): f.result(90).offset for tp, f in futures.items()}
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def produce_one_each(self, timeout: float = PRODUCE_TIMEOUT) -> float:
        """One message to every partition, all delivered within `timeout` s; returns the seconds taken."""
        failed: dict[str, int] = {}

        def delivered(err, _msg):
            if err is not None:
                failed[err.name()] = failed.get(err.name(), 0) + 1

        t0 = time.monotonic()
        for t in self.topics:
            for p in range(self.partitions):
                self.producer.produce(t, b"x" * 32, partition=p, on_delivery=delivered)
        left = self.producer.flush(timeout)
        if left or failed:
            raise RuntimeError(
                f"{left} of {len(self.topics) * self.partitions} messages not delivered within {timeout:g} s"
                f"; delivery errors: {failed or 'none'} (a broker slow to append: see INDEX_BYTES)"
            )
        return time.monotonic() - t0

    def fill_to(self, minimum: int) -> bool:
        """Produce until every head is >= minimum (once: later runs reuse the data); bounded retries,
        since a broker that has just created 2,000 partitions can time requests out for a while."""
        produced = False
        for _ in range(4):
            short = {tp: minimum - h for tp, h in self.heads().items() if h < minimum}
            if not short:
                return produced
            produced = True
            for (t, p), n in short.items():
                for _ in range(n):
                    while True:
                        try:
                            self.producer.produce(t, b"x" * 16, partition=p)
                            break
                        except BufferError:
                            self.producer.poll(0.1)
                self.producer.poll(0)
            self.producer.flush(300)
        raise RuntimeError(f"could not fill every partition to offset {minimum}")

    def commit_all(self, heads: dict[tuple[str, int], int], minus: int = 0, anchored: int = 0) -> None:
        """Every group commits heads - minus (the first `anchored` groups head - minus - 1 on their
        first partition); all futures in flight at once."""
        futures = {}
        for i, group in enumerate(self.groups):
            tps = []
            for j, (t, p) in enumerate(self.assignment(i)):
                below = 1 if (i < anchored and j == 0) else 0
                tps.append(TopicPartition(t, p, max(0, heads[(t, p)] - minus - below)))
            futures[group] = self.admin.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, tps)], request_timeout=60
            )[group]
        for f in futures.values():
            f.result(120)


# --------------------------------------------------------------------------- the floor


def floor_sample(admin: AdminClient) -> dict:
    """The same Kafka requests as one sample, bare: no processing, no database."""
    t0, c0 = time.perf_counter(), time.process_time()
    md = admin.list_topics(timeout=30)
    listed = admin.list_consumer_groups(request_timeout=30).result(60)
    groups = [g.group_id for g in listed.valid]
    futures = [
        admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(g)], request_timeout=30, require_stable=False
        )[g]
        for g in groups
    ]
    commits = sum(len(f.result(60).topic_partitions) for f in futures)
    request = {
        TopicPartition(name, p): OffsetSpec.latest()
        for name, t in md.topics.items()
        if name not in INTERNAL
        for p in t.partitions
    }
    heads = admin.list_offsets(request, request_timeout=30)
    for f in heads.values():
        f.result(60)
    return {
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
        "groups": len(groups),
        "commits": commits,
        "partitions": len(request),
        "requests": 3 + len(groups),
    }


# --------------------------------------------------------------------------- the sampler, instrumented


class Timers:
    """Wall time spent in each wrapped method during one step."""

    def __init__(self):
        self.spent: dict[str, float] = {}

    def wrap(self, obj, names, label):
        for name in names:
            original = getattr(obj, name)

            def timed(*a, _orig=original, _key=f"{label}.{name}", **kw):
                t = time.perf_counter()
                try:
                    return _orig(*a, **kw)
                finally:
                    self.spent[_key] = self.spent.get(_key, 0.0) + time.perf_counter() - t

            setattr(obj, name, timed)

    def take(self) -> dict[str, float]:
        spent, self.spent = self.spent, {}
        return spent


KAFKA_CALLS = ("topics", "groups", "committed", "heads_and_log_starts", "message_times")
STORE_CALLS = (
    "record_heads",
    "record_commits",
    "lag_inputs",
    "save_group_status",
    "mark_excluded",
    "add_transitions",
    "put_anchors",
    "delete_topic",
    "group_trends",
    "group_figures",
    "save_group_figures",
)


def prefill(store: Store, cluster: Cluster, heads: dict[tuple[str, int], int], now: float) -> float:
    """A database as a long-running sampler has it: HISTORY_HEADS head rows per partition and
    HISTORY_COMMITS commit rows per group-partition (the housekeeper's default limits), all
    below the current heads, at simulated past times one minute apart: the rows record_heads /
    record_commits write for a head or commit that advanced at each sample. All but the newest
    are bulk-inserted through the Store's own connection (100 record_commits calls of 20,000
    take a minute); the newest go through record_heads / record_commits, so that the Store
    keeps whatever it derives from them (e.g. its table of latest commits)."""
    t0 = time.perf_counter()
    pairs = sorted((g, t, p) for i, g in enumerate(cluster.groups) for t, p in cluster.assignment(i))

    def head_at(k):
        return lambda h: h - HISTORY_HEADS + k

    def commit_at(j, h):
        return h - HISTORY_HEADS + j * (HISTORY_HEADS - 1) // HISTORY_COMMITS

    def head_time(k):
        return now - (HISTORY_HEADS - k) * 60.0

    def commit_time(j):
        return now - (HISTORY_COMMITS - j) * 60.0 + 30.0

    db = store._conn
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(
            "INSERT INTO partition_offsets(topic, partition, offset, first_seen, last_seen)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                (t, p, h - HISTORY_HEADS + k, head_time(k), head_time(k))
                for (t, p), h in sorted(heads.items())
                for k in range(HISTORY_HEADS - 1)
            ),
        )
        db.executemany(
            "INSERT INTO consumer_commits(group_id, topic, partition, first_seen, committed_offset,"
            " last_seen) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (g, t, p, commit_time(j), commit_at(j, heads[(t, p)]), commit_time(j))
                for g, t, p in pairs
                for j in range(HISTORY_COMMITS - 1)
            ),
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    last = HISTORY_HEADS - 1
    store.record_heads({tp: h - HISTORY_HEADS + last for tp, h in heads.items()}, head_time(last))
    last = HISTORY_COMMITS - 1
    store.record_commits({(g, t, p): commit_at(last, heads[(t, p)]) for g, t, p in pairs}, commit_time(last))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - t0


def worker_cpu(client) -> float:
    """CPU seconds of an IsolatedKafkaClient's offsets worker process (0 for a plain client)."""
    worker = getattr(client, "_worker", None)
    if worker is None or worker.pid is None:
        return 0.0
    try:
        fields = open(f"/proc/{worker.pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Subject:
    """One in-process Sampler with its own Store (temp file) and Kafka client."""

    def __init__(self, label: str, client_cls, cfg, db: Path, prefill_with=None):
        self.label = label
        self.store = Store(str(db))
        self.prefill_seconds = prefill(self.store, *prefill_with) if prefill_with else None
        self.client = client_cls(cfg.kafka, logger=logging.getLogger(f"bench.{label}.kafka"))
        self.sampler = Sampler(cfg, self.store, self.client, logging.getLogger(f"bench.{label}"))
        self.timers = Timers()
        self.timers.wrap(self.client, KAFKA_CALLS, "kafka")
        self.timers.wrap(self.store, STORE_CALLS, "store")
        self.warm: dict | None = None
        self.samples: list[dict] = []

    def sample(self) -> dict:
        r0, w0, b0 = self.client.requests, worker_cpu(self.client), common.written_bytes()
        t0, c0 = time.perf_counter(), time.process_time()
        self.sampler.step(time.time())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        res = self.sampler.last_result
        return {
            "wall": wall,
            "cpu": cpu + max(0.0, worker_cpu(self.client) - w0),
            "written": common.written_bytes() - b0,
            "requests": self.client.requests - r0,
            "groups": res.groups_sampled,
            "partitions": res.partitions,
            "anchors": res.anchors_read,
            "spent": self.timers.take(),
        }

    def close(self) -> None:
        self.client.close()
        self.store.close()


def profile_samples(subject: Subject, cluster, heads_state, count: int) -> str:
    prof = cProfile.Profile()
    for _ in range(count):
        heads_state = advance(cluster, heads_state)
        prof.enable()
        subject.sampler.step(time.time())
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(20)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def advance(cluster: Cluster, previous: dict) -> dict:
    """One message to every partition; every group commits the previous heads."""
    cluster.produce_one_each()
    cluster.commit_all(previous)
    return cluster.heads()


# --------------------------------------------------------------------------- stage processes


def stage_runs(bootstrap: str, workdir: Path, kafka_options: dict | None = None):
    """Each real stage once (`--once`), launched through bench.peak_rss."""
    cfg = write_config(
        workdir, bootstrap, kafka=kafka_options
    )  # 1 s sample interval: the second sample is due again
    runs = [
        ("sampler", "first sample, fresh database"),
        ("sampler", "second sample"),
        ("reporter", "one report"),
        ("housekeeper", "one pass"),
    ]
    results = []
    for stage, what in runs:
        time.sleep(1.1)
        r = common.peak_rss(
            [sys.executable, "-m", f"processes.{stage}", "--config", str(cfg), "--once"],
            log=workdir / f"{stage}.log",
            timeout=300,
        )
        results.append((stage, what, r))
    return results


# --------------------------------------------------------------------------- main


def summarize(subject: Subject, f_wall: float) -> tuple:
    s = subject.samples
    wall, cpu = median(x["wall"] for x in s), median(x["cpu"] for x in s)
    return (
        f"sample {subject.label}, median of {len(s)}",
        fmt(wall, 3),
        fmt(cpu, 3),
        int(median(x["requests"] for x in s)),
        s[-1]["groups"],
        s[-1]["partitions"],
        "/".join(str(int(v)) for v in (median(x["anchors"] for x in s), max(x["anchors"] for x in s))),
        common.mb(median(x["written"] for x in s)),
        f"{wall / f_wall:.2f}x",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.broker_args(parser)
    parser.add_argument(
        "--prefix", default="lagbench", help="topic and group name prefix (reused if present)"
    )
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=10, help="steady-state samples (after the warm-up)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile 3 more samples even if the target is met"
    )
    parser.add_argument("--no-stages", action="store_true", help="skip the stage processes' memory run")
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="multiply topics and groups (10: 20,000 partitions x 10,000 groups, judged against 2x the "
        "floor and a 200 MB sampler; 3 samples and no full-history database unless --full-history)",
    )
    parser.add_argument(
        "--full-history", action="store_true", help="at --scale > 1, prefill a full-history database too"
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="no cProfile samples even if the target is missed"
    )
    args = parser.parse_args()
    common.header("bench/sampler_cost.py")
    scaled = args.scale > 1
    args.topics, args.groups = args.topics * args.scale, args.groups * args.scale
    if scaled and args.samples == parser.get_default("samples"):
        args.samples = 3
    args.samples = max(3, min(args.samples, 50))
    with_history = not scaled or args.full_history
    goal_ratio = SCALED_RATIO if scaled else TARGET_RATIO
    goal_rss = SCALED_RSS_MB if scaled else TARGET_RSS_MB
    logging.basicConfig(level=logging.WARNING)

    with common.kafka(args) as bootstrap:
        cluster = Cluster(bootstrap, args.prefix, args.topics, args.partitions, args.groups)
        t0 = time.monotonic()
        created = cluster.ensure_topics()
        cluster.fill_to(HISTORY_HEADS + 20 if with_history else 2)  # room below the heads for a full history
        # One iteration's messages before any is timed: every partition's first index entry after
        # fill_to's batch (slow on topics an older run made with 10 MB indexes: see INDEX_BYTES).
        settle = cluster.produce_one_each(SETUP_TIMEOUT)
        heads = cluster.heads()
        listed = {g.group_id for g in cluster.admin.list_consumer_groups(request_timeout=30).result(60).valid}
        reused_groups = sum(g in listed for g in cluster.groups)
        # A fresh database: the warm-up's commits sit at the heads, the first ANCHORED_GROUPS
        # groups one message below on one partition (those need an anchor).
        cluster.commit_all(heads, anchored=ANCHORED_GROUPS)
        print(
            f"# cluster: {len(cluster.topics)} topics x {args.partitions} partitions = "
            f"{len(heads)} partitions; {len(cluster.groups)} groups x 20 partitions = "
            f"{len(cluster.groups) * 20} commits; topics created {created}, groups reused {reused_groups}; "
            f"setup {time.monotonic() - t0:.1f} s (its one message to every partition {settle:.1f} s)",
            flush=True,
        )

        common.BENCH_TMP.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sampler-cost-", dir=common.BENCH_TMP) as tmp:
            tmp = Path(tmp)
            # a broker holding ten times the partitions answers ListOffsets slower than the 5 s of `fast`
            # and reading 10,000 partitions' message timestamps (a burst past every caught-up group)
            # needs the 10 s anchor budget of a 20 s interval, not the 2 s of `fast`'s 1 s
            kafka_options = {"request_timeout_seconds": 30} if scaled else None
            monitoring = (
                {"sample_interval_seconds": 20, "offline_sample_interval_seconds": 40} if scaled else None
            )
            cfg = lagconfig.load(
                str(write_config(tmp / "inproc", bootstrap, kafka=kafka_options, monitoring=monitoring))
            )
            stage_client = IsolatedKafkaClient or KafkaClient  # what processes/sampler.py uses
            subjects = [Subject("plain/new-db", KafkaClient, cfg, tmp / "inproc" / "plain.db")]
            if IsolatedKafkaClient is not None:
                subjects.append(
                    Subject("isolated/new-db", IsolatedKafkaClient, cfg, tmp / "inproc" / "isolated.db")
                )
            aged = None
            if with_history:
                aged = Subject(
                    ("isolated" if IsolatedKafkaClient else "plain") + "/full-history",
                    stage_client,
                    cfg,
                    tmp / "inproc" / "aged.db",
                    prefill_with=(cluster, heads, time.time()),
                )
                subjects.append(aged)
                print(
                    f"# full-history database: {HISTORY_HEADS} head rows per partition and {HISTORY_COMMITS} "
                    f"commit rows per group-partition bulk-inserted in {aged.prefill_seconds:.1f} s "
                    f"({os.path.getsize(aged.store.path) / 1e6:.0f} MB)",
                    flush=True,
                )
            floor_admin = AdminClient({"bootstrap.servers": bootstrap})
            floor_sample(floor_admin)  # connections up, like the samplers' after their warm-up
            for subject in subjects:
                subject.warm = subject.sample()
            floors = []
            for i in range(args.samples):
                heads = advance(cluster, heads)
                # rotate the order so that no one always runs first after the cluster changed
                order = [None, *subjects]
                order = order[i % len(order) :] + order[: i % len(order)]
                for who in order:
                    if who is None:
                        floors.append(floor_sample(floor_admin))
                    else:
                        who.samples.append(who.sample())

            f_wall, f_cpu = median(f["wall"] for f in floors), median(f["cpu"] for f in floors)
            rows = []
            for subject in subjects:
                w = subject.warm
                rows.append(
                    (
                        f"warm-up sample {subject.label}",
                        fmt(w["wall"], 3),
                        fmt(w["cpu"], 3),
                        w["requests"],
                        w["groups"],
                        w["partitions"],
                        w["anchors"],
                        common.mb(w["written"]),
                        "-",
                    )
                )
            rows += [summarize(subject, f_wall) for subject in subjects]
            rows.append(
                (
                    f"floor (bare confluent_kafka), median of {len(floors)}",
                    fmt(f_wall, 3),
                    fmt(f_cpu, 3),
                    floors[-1]["requests"],
                    floors[-1]["groups"],
                    floors[-1]["partitions"],
                    "-",
                    "-",
                    "1.00x",
                )
            )
            print(
                table(
                    [
                        "",
                        "wall s",
                        "cpu s",
                        "requests",
                        "groups",
                        "partitions",
                        "anchors read (median/max)",
                        "written MB",
                        "wall / floor",
                    ],
                    rows,
                    title=f"Sampler cost per sample ({len(heads):,} partitions, {len(cluster.groups):,} groups, "
                    f"{len(cluster.groups) * 20:,} commits)",
                )
            )
            spread = "; ".join(
                f"{x.label} {fmt(min(s['wall'] for s in x.samples), 3)}-"
                f"{fmt(max(s['wall'] for s in x.samples), 3)} s"
                for x in subjects
            )
            print(
                "\nplain = KafkaClient in-process; isolated = IsolatedKafkaClient (committed offsets in a "
                "worker process, as processes/sampler.py runs it); new-db = empty database before the "
                f"warm-up; full-history = database prefilled with {HISTORY_HEADS} head rows per partition "
                f"and {HISTORY_COMMITS} commit rows per group-partition (the housekeeper's limits). written = "
                "bytes the sample passed to write() (SQLite WAL and checkpoints)."
            )
            print(
                f"wall min-max: {spread}; floor {fmt(min(f['wall'] for f in floors), 3)}-"
                f"{fmt(max(f['wall'] for f in floors), 3)} s. CPU = this process (all threads)"
                f"{' + the offsets worker process' if len(subjects) > 1 else ''}."
            )

            # the stage's client, on the database it runs on after a few hours (and on a fresh one)
            main_subject = aged or subjects[-1]
            keys = sorted({k for x in subjects for s in x.samples for k in s["spent"]})
            parts = []
            for k in keys:
                parts.append(
                    (k, *(fmt(median(s["spent"].get(k, 0.0) for s in x.samples), 3) for x in subjects))
                )
            parts.append(
                (
                    "(rest: lag math, states, Python)",
                    *(
                        fmt(
                            median(x["wall"] for x in x.samples)
                            - sum(median(s["spent"].get(k, 0.0) for s in x.samples) for k in keys),
                            3,
                        )
                        for x in subjects
                    ),
                )
            )
            print(
                table(
                    ["where a steady-state sample's wall time goes (median s)", *(x.label for x in subjects)],
                    parts,
                )
            )
            print()
            ratio = 0.0
            for subject in subjects[1:] if len(subjects) > 1 else subjects:  # the stage's client
                r = median(x["wall"] for x in subject.samples) / f_wall
                ratio = max(ratio, r)
                print(
                    f"target: a sample within {goal_ratio}x the floor ({subject.label}): "
                    f"{verdict(r <= goal_ratio)} ({r:.2f}x)"
                )

            if args.profile or (ratio > goal_ratio and not args.no_profile):
                print(f"\ncProfile of 3 more steady-state samples ({main_subject.label}):\n")
                print(profile_samples(main_subject, cluster, heads, 3))
            for subject in subjects:
                subject.close()

            if not args.no_stages:
                stage_dir = common.BENCH_TMP / "sampler-cost-stages"
                shutil.rmtree(stage_dir, ignore_errors=True)
                results = stage_runs(bootstrap, stage_dir, kafka_options)
                rows = [
                    (
                        f"{stage} --once",
                        what,
                        fmt(r["wall"], 2),
                        fmt(r["cpu"], 2),
                        fmt(r["rss_mb"], 1),
                        r["exit"],
                        verdict(
                            r["rss_mb"] < (goal_rss if stage == "sampler" else TARGET_RSS_MB)
                            and r["exit"] == 0
                            and (not scaled or stage != "reporter" or r["wall"] < REPORT_SECONDS)
                        ),
                    )
                    for stage, what, r in results
                ]
                print(
                    table(
                        [
                            "stage process",
                            "step",
                            "wall s",
                            "cpu s",
                            "peak RSS MB",
                            "exit",
                            f"< {goal_rss:.0f} MB sampler, < {TARGET_RSS_MB:.0f} MB others"
                            + (f", report < {REPORT_SECONDS:.0f} s" if scaled else ""),
                        ],
                        rows,
                        title="Stage processes against the same cluster (peak RSS of the process and any "
                        "child it waited for, via bench.peak_rss)",
                    )
                )
                print(f"\nstage logs: {stage_dir}")
                for stage, what, r in results:
                    if r["exit"] != 0:
                        log = (stage_dir / f"{stage}.log").read_text(errors="replace").splitlines()
                        print(
                            f"{stage} ({what}) exited {r['exit']}; its log ends:\n  " + "\n  ".join(log[-8:])
                        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What one report costs on a large database: time and peak memory of the reporter step.

    .venv/bin/python -m bench.reporter_cost [--rebuild] [--repeat 5]

No Kafka. The database has 10,000 partitions (500 topics x 20) with 300 head snapshots each
(3,000,000 rows, heads advancing at rates from 1 to 1,000 messages a minute, one snapshot a
minute of simulated time, some snapshots spanning an idle minute) and 100,000
group-partition pairs (2,500 groups x 2 topics x 20 partitions; 5,000 group/topics in
lag.json): 94% of the commits inside the history, 5% caught up, 1% below the history with
an exact anchor.

How it is built: the head snapshots are bulk-inserted through the Store's own connection
(the same rows record_heads writes; 300 record_heads calls of 10,000 would take minutes);
the commits go through Store.record_commits, three samples a minute apart (half of the
groups advance at each, half are static), and the group states through
Store.save_group_status. That is the "shallow" database: 1 to 3 commit rows per pair. The
"full-history" database adds, by bulk insert, older commit rows up to 100 per pair
(max_commit_entries_per_partition's default: what a long-running lagmon holds for groups
that commit every sample, 10,000,000 rows). Both are cached in the benchmark's temp
directory (--rebuild to start over).

The group statuses carry the lag summaries the sampler stores (timelag.group_summaries over
the history, computed once while building). Measured on each: Reporter(cfg, store).step(now)
in this process (median of --repeat, after one untimed run, lag.json written for real); and,
separately, the per-partition work that moved into the sampler: Store.lag_inputs() and
timelag.group_summaries() for all 100,000 pairs; the real reporter process once (`python -m processes.reporter --config CFG
--once`) through bench.peak_rss for its peak RSS.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import sys
import time

from bench import common
from bench.common import fmt, median, table, verdict
from lagmon import config as lagconfig
from lagmon import timelag
from lagmon.stages.reporter import Reporter
from lagmon.store import SCHEMA_VERSION, GroupStatus, Store

TOPICS, PARTITIONS, SNAPSHOTS = 500, 20, 300
GROUPS, TOPICS_PER_GROUP = 2500, 2
DEEP_COMMITS = 100
TARGET_SECONDS, TARGET_MB = 1.0, 150.0
RATES = (1, 5, 20, 100, 1000)  # messages a minute


def topic_name(i: int) -> str:
    return f"rt-topic-{i:03d}"


def group_topics(g: int) -> list[str]:
    return [topic_name((g + k * (TOPICS // 2 + 1)) % TOPICS) for k in range(TOPICS_PER_GROUP)]


def head_rows(now: float):
    """Yield (topic, partition, offset, first_seen, last_seen) in primary-key order, and remember
    each partition's offsets for the commits."""
    rnd = random.Random(7)
    for i in range(TOPICS):
        t = topic_name(i)
        for p in range(PARTITIONS):
            rate = RATES[(i + p) % len(RATES)]
            offset = rnd.randrange(0, 10_000)
            for k in range(SNAPSHOTS):
                first = now - (SNAPSHOTS - k) * 60.0
                last = first + (60.0 if k % 7 == 3 else 0.0)  # idle for a minute: one row spans two samples
                yield t, p, offset, first, last
                offset += max(1, int(rate * rnd.uniform(0.5, 1.5)))


def build(path: str, meta_path: str) -> dict:
    """The shallow database (see the module docstring); returns its metadata."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    now = time.time()
    t0 = time.perf_counter()
    store = Store(path)
    db = store._conn
    offsets: dict[tuple[str, int], list[int]] = {}

    def remember(rows):
        for row in rows:
            offsets.setdefault((row[0], row[1]), []).append(row[2])
            yield row

    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO partition_offsets(topic, partition, offset, first_seen, last_seen)"
        " VALUES (?, ?, ?, ?, ?)",
        remember(head_rows(now)),
    )
    db.execute("COMMIT")
    heads_s = time.perf_counter() - t0

    rnd = random.Random(11)
    position: dict[tuple[str, str, int], int] = {}
    anchors = []
    for g in range(GROUPS):
        group = f"rt-group-{g:04d}"
        for t in group_topics(g):
            for p in range(PARTITIONS):
                history = offsets[(t, p)]
                roll = rnd.random()
                if roll < 0.05:
                    c = history[-1]  # caught up
                elif roll < 0.06:
                    c = history[0] - rnd.randrange(1, 50)  # below the history: anchored
                    anchors.append((t, p, c, now - SNAPSHOTS * 60.0 - 300.0, 1))
                else:
                    c = (
                        history[rnd.randrange(SNAPSHOTS - 10, SNAPSHOTS - 3)] - rnd.randrange(0, 3)
                        if roll < 0.5
                        else history[rnd.randrange(1, SNAPSHOTS - 5)]
                    )
                position[(group, t, p)] = c
    t1 = time.perf_counter()
    for k in range(3):  # three samples a minute apart; half the groups advance at each
        at = now - (2 - k) * 60.0
        commits = {}
        for (group, t, p), c in position.items():
            moves = k > 0 and int(group[-4:]) % 2 == 0 and c >= offsets[(t, p)][0]
            commits[(group, t, p)] = min(c + (k if moves else 0), offsets[(t, p)][-1])
        store.record_commits(commits, at)
    commits_s = time.perf_counter() - t1
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT OR REPLACE INTO partition_anchors(topic, partition, offset, timestamp, exact)"
        " VALUES (?, ?, ?, ?, ?)",
        anchors,
    )
    db.execute("COMMIT")
    states = ("online", "online", "online", "offline", "recovering")
    keys = [(f"rt-group-{g:04d}", t) for g in range(GROUPS) for t in group_topics(g)]
    # What the sampler stores with each status: the lag summary from the partitions' history.
    summaries = timelag.group_summaries(store.lag_inputs(), keys)
    store.save_group_status(
        [
            GroupStatus(
                group,
                t,
                states[i % len(states)],
                now - 3600.0,
                "bench",
                0,
                now,
                now + 60.0,
                now,
                None,
                summaries[(group, t)],
            )
            for i, (group, t) in enumerate(keys)
        ]
    )
    store.heartbeat("sampler", pid=1, started_at=now - 86400.0, at=now, interval=60.0, success=True)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    meta = {
        "schema": SCHEMA_VERSION,
        "now": now,
        "heads_seconds": heads_s,
        "commits_seconds": commits_s,
        "build_seconds": time.perf_counter() - t0,
        "pairs": len(position),
        "anchors": len(anchors),
    }
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return meta


def deepen(shallow: str, deep: str, meta: dict) -> float:
    """Copy of the shallow database with older commit rows, up to DEEP_COMMITS per pair."""
    t0 = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(deep + suffix):
            os.remove(deep + suffix)
    shutil.copyfile(shallow, deep)
    store = Store(deep)
    db = store._conn
    firsts = db.execute(
        "SELECT group_id, topic, partition, min(first_seen), min(committed_offset)"
        " FROM consumer_commits GROUP BY group_id, topic, partition"
    ).fetchall()
    have = dict(
        ((g, t, p), n)
        for g, t, p, n in db.execute(
            "SELECT group_id, topic, partition, count(*) FROM consumer_commits GROUP BY group_id, topic, partition"
        )
    )

    def older():
        for g, t, p, first, offset in firsts:
            for j in range(1, DEEP_COMMITS - have[(g, t, p)] + 1):
                at = first - j * 60.0
                yield g, t, p, at, max(0, offset - j), at

    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO consumer_commits(group_id, topic, partition, first_seen, committed_offset,"
        " last_seen) VALUES (?, ?, ?, ?, ?, ?)",
        older(),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return time.perf_counter() - t0


def write_cfg(directory, db_path) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "config.yaml")
    with open(path, "w") as f:
        f.write(
            "kafka:\n  bootstrap_servers: 127.0.0.1:1\n"  # never contacted by the reporter
            "monitoring:\n  sample_interval_seconds: 60\n  report_interval_seconds: 60\n"
            f"database:\n  path: {db_path}\noutput:\n  json_path: {os.path.join(directory, 'lag.json')}\n"
        )
    return path


def measure(label: str, db_path: str, now: float, repeat: int, workdir: str) -> tuple:
    cfg_path = write_cfg(os.path.join(workdir, label), db_path)
    cfg = lagconfig.load(cfg_path)
    store = Store(db_path)
    rows = store._conn.execute(
        "SELECT (SELECT count(*) FROM partition_offsets), (SELECT count(*) FROM consumer_commits)"
    ).fetchone()
    reporter = Reporter(cfg, store)
    reporter.write(now)  # untimed: page cache and statement cache warm
    steps, reads = [], []
    keys = list(store.group_statuses())
    for _ in range(repeat):
        t0 = time.perf_counter()  # the per-partition work, done by the sampler for what it samples
        timelag.group_summaries(store.lag_inputs(), keys)
        reads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        reporter.write(now)
        steps.append(time.perf_counter() - t0)
    store.close()
    child = common.peak_rss(
        [sys.executable, "-m", "processes.reporter", "--config", cfg_path, "--once"],
        log=os.path.join(workdir, label, "reporter.log"),
        timeout=300,
    )
    report = json.load(open(cfg.output.json_path))
    return (
        label,
        rows[0],
        rows[1],
        len(report["consumers"]),
        os.path.getsize(db_path),
        os.path.getsize(cfg.output.json_path),
        median(reads),
        median(steps),
        min(steps),
        max(steps),
        child,
    )


def profile_step(db_path: str, now: float, workdir: str) -> str:
    """cProfile of one Reporter.step on db_path."""
    cfg = lagconfig.load(write_cfg(os.path.join(workdir, "profile"), db_path))
    store = Store(db_path)
    reporter = Reporter(cfg, store)
    reporter.write(now)
    prof = cProfile.Profile()
    prof.enable()
    reporter.write(now)
    prof.disable()
    store.close()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(12)
    stats.sort_stats("cumulative").print_stats(14)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="build the databases again")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-deep", action="store_true", help="only the shallow database")
    parser.add_argument("--profile", action="store_true", help="cProfile one step even if the target is met")
    args = parser.parse_args()
    common.header("bench/reporter_cost.py")
    repeat = max(1, min(args.repeat, 20))
    base = common.BENCH_TMP / "reporter-cost"
    base.mkdir(parents=True, exist_ok=True)
    shallow, deep, meta_path = str(base / "shallow.db"), str(base / "deep.db"), str(base / "meta.json")

    stale = (
        not (os.path.exists(shallow) and os.path.exists(meta_path))
        or json.load(open(meta_path)).get("schema") != SCHEMA_VERSION
    )
    if args.rebuild or stale:
        meta = build(shallow, meta_path)
        print(
            f"# built {shallow} in {meta['build_seconds']:.0f} s (heads bulk-inserted in "
            f"{meta['heads_seconds']:.0f} s, 3 record_commits of {meta['pairs']:,} in "
            f"{meta['commits_seconds']:.0f} s)",
            flush=True,
        )
        if os.path.exists(deep):
            os.remove(deep)
    else:
        print(f"# reusing {shallow}, built for this schema version (--rebuild to build it again)", flush=True)
    meta = json.load(open(meta_path))
    if not args.skip_deep and not os.path.exists(deep):
        print(f"# built {deep} in {deepen(shallow, deep, meta):.0f} s", flush=True)

    now = meta["now"] + 30.0
    results = [measure("shallow", shallow, now, repeat, str(base))]
    if not args.skip_deep:
        results.append(measure("full-history", deep, now, repeat, str(base)))
    rows = []
    for label, heads, commits, consumers, db_bytes, _json_bytes, read, step, lo, hi, child in results:
        rows.append(
            (
                label,
                f"{heads:,}",
                f"{commits:,}",
                f"{consumers:,}",
                common.mb(db_bytes),
                fmt(read, 2),
                fmt(step, 2),
                f"{fmt(lo, 2)}-{fmt(hi, 2)}",
                fmt(child["wall"], 2),
                fmt(child["rss_mb"], 1),
                verdict(step < TARGET_SECONDS and child["rss_mb"] < TARGET_MB and child["exit"] == 0),
            )
        )
    print(
        table(
            [
                "database",
                "head rows",
                "commit rows",
                "group/topics",
                "db MB",
                "all summaries s",
                f"step s (median of {repeat})",
                "step min-max",
                "process s",
                "process peak RSS MB",
                "< 1 s and < 150 MB",
            ],
            rows,
            title="Reporter: 10,000 partitions x 300 snapshots, 100,000 group-partition pairs",
        )
    )
    print(
        f"\nstep = Reporter.step(now): read the sampler's per-group lag summaries, the lag at now, build "
        f"and write lag.json ({common.mb(results[0][5])} MB); process = `python -m processes.reporter --once` "
        "(start-up, one step, heartbeat), its own peak RSS. all summaries = the per-partition work "
        "(history look-ups and interpolation) for all 100,000 pairs, which the sampler does for the "
        "groups it samples, each at its own interval; it is not part of a report."
    )
    missed = any(r[7] >= TARGET_SECONDS for r in results)
    if args.profile or missed:
        print("\ncProfile of one Reporter.step on the shallow database:\n")
        print(profile_step(shallow, now, str(base)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

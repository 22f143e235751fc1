"""A simulated week at 2,000 partitions with the housekeeper: does the database stay flat?

    .venv/bin/python -m bench.week [--days 7] [--sample-every 300] [--housekeep-every 21600]

No Kafka: a simulated clock drives the Store writes the sampler makes and the real
Housekeeper.step, each on its own Store connection to one database file, as the two stage
processes have. 100 topics x 20 partitions, the topics' heads advancing at varied rates
(idle, a message every few minutes, 5, 100 and 5,000 messages a minute, a diurnal rate,
bursts of an hour every 6 hours), 100 groups of 20 partitions: 70 keep up, 20 lag by ~10
minutes, 5 stop on day 2 and resume on day 4 (sampled every offline interval while stopped),
5 commit once and never again. Every sample: record_heads of all 2,000 partitions,
record_commits of the due groups, save_group_status; the housekeeper with lagmon's defaults
(max_entries_per_partition 300, max_commit_entries_per_partition 100).

To keep the run near 5 minutes on 2 cores the simulation samples every 300 simulated seconds
(lagmon's default is 60) and runs the housekeeper every 6 simulated hours (default 15 minutes;
one pass at this size takes seconds of CPU, so 672 of them would take most of an hour). The
history cap (300 head rows per partition) is reached after ~25 hours by a partition that moves
at every sample instead of 5; rows pile up for 6 hours between passes instead of 15 minutes,
which the "peak" column shows. The database lives in /dev/shm by default (--dir): sizes do not
depend on the medium. Printed every simulated 12 h: database and WAL sizes, rows, bytes per
partition. Target: flat after the first day.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time

from bench import common
from bench.common import fmt, median, table, verdict
from lagmon import config as lagconfig
from lagmon.stages.housekeeper import Housekeeper
from lagmon.store import GroupStatus, Store

TOPICS, PARTITIONS, GROUPS = 100, 20, 100
DAY = 86400.0
OFFLINE_INTERVAL = 1800.0


def rate_per_minute(topic: int, t: float) -> float:
    """Messages a minute of a topic at simulated time t (seconds since the start)."""
    kind = topic % 7
    if kind == 0:
        return 0.0  # idle
    if kind == 1:
        return 0.3  # a message every few minutes
    if kind == 2:
        return 5.0
    if kind == 3:
        return 100.0
    if kind == 4:
        return 5000.0
    if kind == 5:
        return 300.0 * (1.0 + math.sin(2 * math.pi * t / DAY))  # diurnal
    return 1000.0 if (t % (6 * 3600.0)) < 3600.0 else 0.0  # an hour of bursts every 6 hours


def group_kind(g: int) -> str:
    if g < 70:
        return "keeps-up"
    if g < 90:
        return "lags"
    if g < 95:
        return "stops"
    return "gone"


def sizes(path: str) -> tuple[int, int]:
    wal = path + "-wal"
    return os.path.getsize(path), os.path.getsize(wal) if os.path.exists(wal) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument(
        "--sample-every",
        type=float,
        default=300.0,
        help="simulated seconds between samples (lagmon's default: 60)",
    )
    parser.add_argument(
        "--housekeep-every",
        type=float,
        default=21600.0,
        help="simulated seconds between housekeeper passes (lagmon's default: 900)",
    )
    parser.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else str(common.BENCH_TMP),
        help="where the database lives (default /dev/shm: sizes do not depend on the medium, "
        "and the simulation runs several times faster in memory)",
    )
    parser.add_argument("--report-every", type=float, default=12 * 3600.0, help="simulated seconds")
    args = parser.parse_args()
    common.header("bench/week.py")
    days = max(1.0, min(args.days, 14.0))
    sample_every = max(10.0, args.sample_every)
    housekeep_every = max(sample_every, args.housekeep_every)

    os.makedirs(args.dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lagmon-week-", dir=args.dir) as tmp:
        db_path = os.path.join(tmp, "state.db")
        cfg_path = os.path.join(tmp, "config.yaml")
        with open(cfg_path, "w") as f:
            f.write(
                f"kafka:\n  bootstrap_servers: 127.0.0.1:1\nmonitoring:\n"
                f"  sample_interval_seconds: {sample_every:g}\n"
                f"  housekeeping_interval_seconds: {housekeep_every:g}\n"
                f"database:\n  path: {db_path}\noutput:\n  json_path: {os.path.join(tmp, 'lag.json')}\n"
            )
        cfg = lagconfig.load(cfg_path)
        sampler_store, keeper_store = Store(db_path), Store(db_path)
        housekeeper = Housekeeper(cfg, keeper_store)

        rnd = random.Random(3)
        start = time.time() - days * DAY  # the simulated week ends about now
        heads = {
            (f"wk-topic-{i:03d}", p): rnd.randrange(0, 1000) for i in range(TOPICS) for p in range(PARTITIONS)
        }
        history: dict[tuple[str, int], list[tuple[float, int]]] = {tp: [(0.0, h)] for tp, h in heads.items()}
        groups = {f"wk-group-{g:03d}": (group_kind(g), f"wk-topic-{g % TOPICS:03d}") for g in range(GROUPS)}
        last_sampled = {g: -math.inf for g in groups}
        commits_at: dict[tuple[str, str, int], int] = {}

        def head_at(tp, t_rel):
            """The head of tp as it was at t_rel (from the recorded steps), for lagging groups."""
            steps = history[tp]
            lo, hi = 0, len(steps) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if steps[mid][0] <= t_rel:
                    lo = mid
                else:
                    hi = mid - 1
            return steps[lo][1]

        rows, sample_s, keep_s, split = [], [], [], []
        peak = 0
        written0 = common.written_bytes()
        next_keep, next_report = housekeep_every, 0.0
        wall0 = time.perf_counter()
        steps = int(days * DAY / sample_every)
        for k in range(steps + 1):
            t_rel = k * sample_every
            now = start + t_rel
            for (topic, p), h in heads.items():
                rate = rate_per_minute(int(topic[-3:]), t_rel) * sample_every / 60.0
                if rate > 0:
                    add = rnd.random() < rate if rate < 1 else int(rate * rnd.uniform(0.7, 1.3))
                    if add:
                        heads[(topic, p)] = h + int(add)
                        history[(topic, p)].append((t_rel, h + int(add)))
                        if len(history[(topic, p)]) > 400:
                            del history[(topic, p)][:100]
            commits, statuses = {}, []
            for g, (kind, topic) in groups.items():
                stopped = kind == "stops" and DAY <= t_rel < 3 * DAY
                interval = OFFLINE_INTERVAL if stopped or kind == "gone" else sample_every
                if t_rel - last_sampled[g] < interval - 1e-6:
                    continue
                last_sampled[g] = t_rel
                for p in range(PARTITIONS):
                    key = (g, topic, p)
                    if kind == "keeps-up":
                        commits_at[key] = heads[(topic, p)]
                    elif kind == "lags":
                        commits_at[key] = head_at((topic, p), t_rel - 600.0)
                    elif (kind == "stops" and not stopped) or key not in commits_at:
                        commits_at[key] = heads[(topic, p)]
                    commits[key] = commits_at[key]
                statuses.append(
                    GroupStatus(
                        g,
                        topic,
                        "offline" if stopped or kind == "gone" else "online",
                        start,
                        "bench",
                        0,
                        now,
                        now + interval,
                        now,
                        0.0,
                    )
                )
            t0 = time.perf_counter()
            sampler_store.record_heads(heads, now)
            t1 = time.perf_counter()
            if commits:
                sampler_store.record_commits(commits, now)
            t2 = time.perf_counter()
            sampler_store.save_group_status(statuses)
            sample_s.append(time.perf_counter() - t0)
            split.append((t1 - t0, t2 - t1))
            peak = max(peak, sum(sizes(db_path)))
            if t_rel >= next_keep:
                t0 = time.perf_counter()
                housekeeper.step(now)
                keep_s.append(time.perf_counter() - t0)
                next_keep += housekeep_every
            if t_rel >= next_report:
                db_bytes, wal_bytes = sizes(db_path)
                head_rows, commit_rows, at_cap = sampler_store._conn.execute(
                    "SELECT (SELECT count(*) FROM partition_offsets), (SELECT count(*) FROM consumer_commits),"
                    " (SELECT count(*) FROM (SELECT 1 FROM partition_offsets GROUP BY topic, partition"
                    "  HAVING count(*) >= ?))",
                    (cfg.monitoring.max_entries_per_partition,),
                ).fetchone()
                rows.append(
                    (
                        t_rel,
                        db_bytes,
                        wal_bytes,
                        head_rows,
                        commit_rows,
                        max(peak, db_bytes + wal_bytes),
                        at_cap,
                    )
                )
                peak = 0
                next_report += args.report_every
        wall = time.perf_counter() - wall0
        written = common.written_bytes() - written0
        sampler_store.close()
        keeper_store.close()

    partitions = len(heads)
    out = []
    for t_rel, db_bytes, wal_bytes, head_rows, commit_rows, window_peak, at_cap in rows:
        out.append(
            (
                f"day {t_rel / DAY:.1f}",
                common.mb(db_bytes),
                common.mb(wal_bytes),
                common.mb(window_peak),
                f"{head_rows:,}",
                f"{head_rows / partitions:.0f}",
                f"{at_cap:,}",
                f"{commit_rows:,}",
                f"{(db_bytes + wal_bytes) / partitions:,.0f}",
            )
        )
    print(
        table(
            [
                "simulated time",
                "db MB",
                "wal MB",
                "db + wal peak since last line, MB",
                "head rows",
                "per partition",
                f"partitions at {cfg.monitoring.max_entries_per_partition} rows",
                "commit rows",
                "bytes per partition (db + wal)",
            ],
            out,
            title=f"A simulated week: {partitions:,} partitions, {GROUPS} groups x {PARTITIONS} partitions, "
            f"a sample every {sample_every:g} s, housekeeping every {housekeep_every:g} s",
        )
    )
    after_day = [r for r in rows if r[0] >= DAY]
    if after_day:
        base = after_day[0][1] + after_day[0][2]
        peak = max(r[5] for r in after_day[1:] or after_day)
        last = after_day[-1][1] + after_day[-1][2]
        growth = (last - base) / base * 100.0
        print(
            f"\nafter day 1: db + wal from {common.mb(base)} MB to {common.mb(last)} MB ({growth:+.1f}%), "
            f"peak {common.mb(peak)} MB. target: flat after the first day (within 10%): "
            f"{verdict(abs(growth) <= 10.0 and peak <= base * 1.1)}"
        )
        idle = sum(
            1 for i in range(TOPICS) if all(rate_per_minute(i, t) == 0 for t in (0.0, 3600.0, 7 * 3600.0))
        )
        bound = (
            partitions - idle * PARTITIONS
        ) * cfg.monitoring.max_entries_per_partition + idle * PARTITIONS
        print(
            f"head rows at the end: {rows[-1][3]:,} of a bound of {bound:,} (max_entries_per_partition x "
            f"the {partitions - idle * PARTITIONS:,} partitions that move, 1 row for each idle one)"
        )
    print(
        f"{len(sample_s):,} samples (median {fmt(median(sample_s) * 1000, 1)} ms of Store writes each), "
        f"{len(keep_s)} housekeeper passes (median {fmt(median(keep_s), 2)} s, max {fmt(max(keep_s), 2)} s); "
        f"{wall:.0f} s in all; record_heads median {fmt(median(x[0] for x in split) * 1000, 1)} ms, "
        f"record_commits median {fmt(median(x[1] for x in split) * 1000, 1)} ms; "
        f"{common.mb(written / len(sample_s))} MB passed to write() per sample (WAL and checkpoints, "
        f"housekeeping included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

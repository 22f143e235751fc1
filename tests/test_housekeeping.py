"""Housekeeping over a simulated week, on a REAL store file, with the REAL sampler,
housekeeper and reporter steps driven by a simulated clock (no Kafka: a deterministic
stand-in cluster answers like lagmon.kafka.KafkaClient).

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

import logging
import os
import random
import time

from lagmon import thinning
from lagmon.stages.housekeeper import Housekeeper
from lagmon.stages.reporter import Reporter
from lagmon.stages.sampler import Sampler
from lagmon.store import GroupStatus, Store, Transition
from tests.simcluster import ARCHIVER_OFF, DAY, GHOST_GONE, HOUR, T0, SimCluster, SimPartition, busy_rates

SAMPLE = 60.0
OFFLINE_SAMPLE = 1800.0
HOUSEKEEPING = 900.0
MAX_ENTRIES = 300
MAX_COMMITS = 100
RETENTION = 2 * DAY

# --------------------------------------------------------------------------- helpers


MONITORING = {
    "sample_interval_seconds": SAMPLE,
    "offline_sample_interval_seconds": OFFLINE_SAMPLE,
    "report_interval_seconds": SAMPLE,
    "housekeeping_interval_seconds": HOUSEKEEPING,
    "max_entries_per_partition": MAX_ENTRIES,
    "max_commit_entries_per_partition": MAX_COMMITS,
    "absent_group_retention_seconds": RETENTION,
}


from tests.helpers import make_config, raw  # noqa: E402


def max_rows(path: str, table: str, key: str) -> int:
    got = raw(path, f"SELECT max(n) FROM (SELECT count(*) AS n FROM {table} GROUP BY {key})")
    return got[0][0] or 0


def db_bytes(path: str) -> int:
    wal = path + "-wal"
    return os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


def quiet() -> logging.Logger:
    log = logging.getLogger("lagmon.test-housekeeping")
    log.setLevel(logging.WARNING)
    return log


# --------------------------------------------------------------------------- the week


def test_simulated_week_bounded_tables_size_and_offline_lag(tmp_path):
    cfg = make_config(tmp_path, monitoring=MONITORING)
    path = cfg.database.path
    cluster = SimCluster()
    assert cluster.partition_count() == 200
    # three connections, as the three processes have
    s_store, h_store, r_store = Store(path), Store(path), Store(path)
    sampler = Sampler(cfg, s_store, cluster, quiet())
    sampler._wall = lambda: cluster.now  # the request clock follows the simulated clock
    keeper = Housekeeper(cfg, h_store, quiet())
    reporter = Reporter(cfg, r_store, quiet())

    sizes: list[tuple[float, int]] = []
    lag_checks: list[tuple[float, float, int]] = []  # (now, true lag, reported lag) of the archiver
    transitions_by_day: dict[int, int] = {}
    ghost_seen_until = None
    worst_heads = worst_commits = 0
    started = time.monotonic()

    steps = int(7 * DAY / SAMPLE)
    for i in range(1, steps + 1):
        now = T0 + i * SAMPLE
        cluster.now = now
        sampler.step(now)
        if i % int(HOUSEKEEPING / SAMPLE) == 0:
            assert keeper.step(now) == HOUSEKEEPING
            heads = max_rows(path, "partition_offsets", "topic, partition")
            commits = max_rows(path, "consumer_commits", "group_id, topic, partition")
            worst_heads, worst_commits = max(worst_heads, heads), max(worst_commits, commits)
            assert heads <= MAX_ENTRIES, f"day {(now - T0) / DAY:.2f}: {heads} head rows in one partition"
            assert commits <= MAX_COMMITS, f"day {(now - T0) / DAY:.2f}: {commits} commit rows in one key"
            sizes.append((now, db_bytes(path)))
            transitions_by_day[int((now - T0) // DAY)] = raw(path, "SELECT count(*) FROM group_transitions")[
                0
            ][0]
            if ("ghost", "clicks") in r_store.group_statuses():
                ghost_seen_until = now
        if now >= ARCHIVER_OFF + HOUR and i % 30 == 0:
            rows = {(r.group_id, r.topic): r for r in reporter.rows(now)}
            lag_checks.append(
                (now, cluster.true_lag("archiver", now), rows[("archiver", "orders")].lag_seconds)
            )
    elapsed = time.monotonic() - started

    # 1. bounded history tables: the caps are reached (so thinning was exercised) and never exceeded
    assert worst_heads == MAX_ENTRIES and worst_commits == MAX_COMMITS

    # 2. file + WAL flat after day 1
    after_day1 = [b for t, b in sizes if t >= T0 + DAY]
    reference = after_day1[0]
    assert max(after_day1) <= reference * 1.25 + 256 * 1024, (
        f"db+wal grew from {reference} bytes at day 1 to {max(after_day1)} bytes"
    )
    assert max(after_day1) < 16 * 1024 * 1024

    # 3. the offline group's lag follows the truth all week: no plateau at the history span
    assert lag_checks[-1][1] > 5.5 * DAY
    bad = [
        (round((t - T0) / DAY, 2), round(truth), got)
        for t, truth, got in lag_checks
        if abs(got - truth) > max(0.05 * truth, 2 * SAMPLE)
    ]
    assert not bad, f"archiver lag off by > 5% (day, true, reported): {bad[:10]}"
    worst_error = max(abs(got - truth) / truth for _t, truth, got in lag_checks if truth >= HOUR)
    statuses = r_store.group_statuses()
    assert statuses[("archiver", "orders")].state == "offline"  # offline for 6 days, still present:
    assert statuses[("billing", "orders")].state == "online"  # not purged

    # 4. the ghost (absent since 12 h) was purged one retention later, with its commits and transitions
    assert ghost_seen_until is not None
    assert ghost_seen_until + HOUSEKEEPING >= GHOST_GONE + RETENTION
    assert ghost_seen_until < GHOST_GONE + RETENTION + OFFLINE_SAMPLE + 2 * HOUSEKEEPING
    assert raw(path, "SELECT count(*) FROM consumer_commits WHERE group_id = 'ghost'") == [(0,)]
    assert raw(path, "SELECT count(*) FROM group_transitions WHERE group_id = 'ghost'") == [(0,)]

    # 5. the flapping group's transitions stay within the retention window: flat after it
    assert transitions_by_day[1] > 20  # the flapper did flap
    window = [transitions_by_day[d] for d in range(3, 7)]
    assert max(window) <= 1.3 * min(window), f"transitions per day-end: {transitions_by_day}"
    oldest = raw(path, "SELECT min(at) FROM group_transitions")[0][0]
    assert oldest >= T0 + 7 * DAY - RETENTION - HOUSEKEEPING

    assert s_store.integrity_check() == "ok"
    for s in (s_store, h_store, r_store):
        s.close()
    print(
        f"\nsimulated week: {steps} samples, {len(sizes)} housekeeping passes in {elapsed:.1f} s; "
        f"db+wal {reference} -> {max(after_day1)} bytes; transitions per day-end {transitions_by_day}; "
        f"archiver lag worst relative error {worst_error:.4f}"
    )


# --------------------------------------------------------------------------- purge / prune, one pass each


def status(group: str, topic: str, last_present: float, state: str = "offline") -> GroupStatus:
    return GroupStatus(
        group_id=group,
        topic=topic,
        state=state,
        since=last_present,
        reason="test",
        static_samples=0,
        last_sampled=last_present,
        next_sample=last_present + OFFLINE_SAMPLE,
        last_present=last_present,
        lag_seconds=10.0,
    )


def test_purge_absent_groups_after_retention(tmp_path):
    cfg = make_config(tmp_path, monitoring=MONITORING)
    store = Store(cfg.database.path)
    keeper = Housekeeper(cfg, store, quiet())
    now = T0 + 10 * DAY
    store.record_heads({("t", 0): 100}, now - 3 * DAY)
    store.record_heads({("t", 0): 200}, now)
    rows = {
        "long-gone": now - RETENTION - 1,  # absent just longer than the retention: purged
        "recent": now - RETENTION + 60,  # absent, but not long enough: kept
        "present": now - 30,  # sampled a moment ago: kept
    }
    store.save_group_status([status(g, "t", at) for g, at in rows.items()])
    store.save_group_status([status("long-gone", "other-topic", now - 60)])  # same group, other topic: kept
    for g, at in rows.items():
        store.record_commits({(g, "t", 0): 50}, at)
        store.add_transitions([Transition(g, "t", at, "online", "offline", "absent")])

    keeper.step(now)

    assert set(store.group_statuses()) == {("recent", "t"), ("present", "t"), ("long-gone", "other-topic")}
    assert {g for (g,) in raw(cfg.database.path, "SELECT DISTINCT group_id FROM consumer_commits")} == {
        "recent",
        "present",
    }
    assert {r.group_id for r in reporter_rows(cfg, store, now)} == {"recent", "present", "long-gone"}
    assert raw(cfg.database.path, "SELECT group_id FROM group_transitions WHERE group_id = 'long-gone'") == []
    # a second pass is a no-op
    keeper.step(now + 1)
    assert len(store.group_statuses()) == 3
    store.close()


def reporter_rows(cfg, store, now):
    return Reporter(cfg, store, quiet()).rows(now)


def test_transitions_pruned_past_retention_even_for_present_groups(tmp_path):
    """A group that flaps for months must not grow group_transitions without bound."""
    cfg = make_config(tmp_path, monitoring=MONITORING)
    store = Store(cfg.database.path)
    keeper = Housekeeper(cfg, store, quiet())
    counts = []
    for hour in range(0, 30 * 24):
        at = T0 + hour * HOUR
        store.save_group_status([status("flapper", "t", at, state="online")])
        store.add_transitions(
            [
                Transition("flapper", "t", at, "online", "offline", "static"),
                Transition("flapper", "t", at + 60, "offline", "online", "advanced"),
            ]
        )
        if hour % 6 == 0:
            keeper.step(at + 61)
            counts.append(raw(cfg.database.path, "SELECT count(*) FROM group_transitions")[0][0])
    per_window = 2 * RETENTION / HOUR
    assert max(counts) <= per_window + 2 * 6 + 2
    assert counts[-1] >= per_window - 2  # the recent ones are kept
    assert ("flapper", "t") in store.group_statuses()
    store.close()


def test_thinning_keeps_offline_lag_on_a_long_head_history(tmp_path):
    """keep_indexes directly through the store: a head advancing every minute for 7 days,
    thinned to 300 rows, still dates a commit from day 1 within 5%."""
    cfg = make_config(tmp_path, monitoring=MONITORING)
    store = Store(cfg.database.path)
    sp = SimPartition(busy_rates(random.Random(3)))
    c = sp.head(ARCHIVER_OFF)
    store.record_commits({("g", "orders", 0): c}, ARCHIVER_OFF + 10)
    for i in range(1, int(7 * DAY / SAMPLE) + 1):
        now = T0 + i * SAMPLE
        store.record_heads({("orders", 0): sp.head(now)}, now)
        if i % 15 == 0:
            store.thin_heads(MAX_ENTRIES, thinning.keep_indexes)
    store.record_commits({("g", "orders", 0): c}, now)  # still there: static
    assert max_rows(cfg.database.path, "partition_offsets", "topic, partition") <= MAX_ENTRIES
    truth = now - sp.append_time(c)
    got = reporter_rows(cfg, store, now)[0].lag_seconds
    assert abs(got - truth) <= 0.05 * truth, (got, truth)
    store.close()


def test_sampler_does_not_spin_after_a_group_leaves(tmp_path):
    """A group that left the cluster must not make the sampler run samples back to back.

    (Found failing: its in-memory status keeps a next_sample in the past, since it is never
    sampled again and the purge does not drop it from Sampler.statuses, so
    Sampler._next_delay returns 0 from one offline interval after the group left.)"""
    retention = 2 * HOUR
    cfg = make_config(tmp_path, monitoring={**MONITORING, "absent_group_retention_seconds": retention})
    cluster = SimCluster()
    store = Store(cfg.database.path)
    sampler = Sampler(cfg, store, cluster, quiet())
    sampler._wall = lambda: cluster.now
    keeper = Housekeeper(cfg, store, quiet())
    delays = {}
    for i in range(1, int((GHOST_GONE + retention + 2 * HOUR - T0) / SAMPLE)):  # past the purge too
        now = T0 + i * SAMPLE
        cluster.now = now
        delays[now] = sampler.step(now)
        if i % int(HOUSEKEEPING / SAMPLE) == 0:
            keeper.step(now)
    spin = [t for t, d in delays.items() if d < 1.0]
    assert not spin, (
        f"sampler.step returned < 1 s at {len(spin)} of {len(delays)} samples, "
        f"first at {spin[0] - GHOST_GONE:.0f} s after the ghost group left"
    )
    store.close()

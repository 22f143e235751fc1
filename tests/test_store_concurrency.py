"""Several OS processes on one WAL database, as sampler, reporter and housekeeper will be."""

import sqlite3
import subprocess
import sys
import threading
import time

from lagmon.store import SCHEMA_VERSION, Store

WORKER = r"""
import sys, time
from lagmon.store import GroupStatus, Store

role, path = sys.argv[1], sys.argv[2]
iterations, seconds, start_at = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
while time.time() < start_at:
    time.sleep(0.001)
deadline = time.monotonic() + seconds
keep_newest = lambda rows, n: set(range(len(rows) - n, len(rows)))
s = Store(path)
i = 0
while i < iterations and time.monotonic() < deadline:
    now = 1000.0 + i
    if role == "heads":
        heads = {("t", p): 10 * i + p for p in range(200)}
        if i % 50 == 49:
            heads[("t", 0)] = 0  # a recreated partition: history reset
        s.record_heads(heads, now)
    elif role == "commits":
        adv = s.record_commits({(f"g{g}", "t", p): 5 * i + g for g in range(3) for p in range(200)}, now)
        s.put_anchor("t", i % 200, 5 * i, now, True)
        s.save_group_status([GroupStatus(f"g{g}", "t", "online", now, "", 0, now, now + 60, now, 1.0)
                             for g in range(3)])
        s.heartbeat("sampler", pid=1, started_at=1000.0, at=now, interval=1.0, success=True)
        if i % 25 == 0:  # housekeeper work in the same process, interleaved
            s.thin_heads(20, keep_newest)
            s.thin_commits(20, keep_newest)
            s.prune_anchors()
            s.maintenance(vacuum_pages=100)
    elif role == "reader":
        rows = s.lag_inputs() if i % 2 else s.lag_inputs({("g0", "t")})
        assert all(r.committed >= 0 for r in rows)
        s.latest_heads()
        s.group_statuses()
        s.stage_states()
    elif role == "opener":
        s.record_heads({("t", int(sys.argv[6])): 1}, now)
        break
    i += 1
s.close()
print(role, "iterations", i)
"""


def run_workers(roles, path, iterations=300, seconds=15.0):
    start_at = time.time() + 0.5  # all processes start their loop at the same instant
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, role, path, str(iterations), str(seconds), str(start_at), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, role in enumerate(roles)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        results.append((p.returncode, out, err))
    return results


def test_two_writers_and_a_reader(tmp_path):
    path = str(tmp_path / "lagmon.db")
    Store(path).close()
    t0 = time.monotonic()
    results = run_workers(["heads", "commits", "reader"], path)
    elapsed = time.monotonic() - t0
    for rc, out, err in results:
        assert rc == 0, err
        assert "database is locked" not in err
        assert "iterations" in out
    assert elapsed < 25
    with Store(path) as s:
        assert s.integrity_check() == "ok"
        assert len(s.lag_inputs()) == 600
        assert s.stage_states()["sampler"].last_success is not None
        assert {k: v.state for k, v in s.group_statuses().items()} == {
            (f"g{g}", "t"): "online" for g in range(3)
        }


def test_concurrent_first_open_of_a_new_file(tmp_path):
    path = str(tmp_path / "fresh.db")
    results = run_workers(["opener"] * 4, path)
    for rc, _out, err in results:
        assert rc == 0, err
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM partition_offsets").fetchone() == (4,)
    finally:
        conn.close()


def test_opening_waits_for_a_long_write_such_as_a_migration(tmp_path):
    """A stage started while another process migrates (a long write) waits for it instead of
    failing with "database is locked" after its ordinary busy timeout."""
    path = str(tmp_path / "busy.db")
    Store(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(1.5, lambda: holder.execute("COMMIT"))
    released.start()
    t0 = time.monotonic()
    try:
        with Store(path, timeout=0.2) as s:  # would give up after 0.2 s without the open wait
            waited = time.monotonic() - t0
            assert s._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 200  # restored after opening
    finally:
        released.join()
        holder.close()
    assert waited >= 1.0

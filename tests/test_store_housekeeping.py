"""lagmon.store housekeeping: thinning, pruning, purging, maintenance (real temporary SQLite files)."""

import os

import pytest

from lagmon.store import (
    GroupStatus,
    HeadRow,
    Store,
    Transition,
)
from tests.store_tools import head_rows, newest_first_keep, raw


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "lagmon.db")


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


# --- housekeeping ------------------------------------------------------------------------------


def test_thin_heads(store, db_path):
    for i in range(10):
        store.record_heads({("t", 0): i * 10, ("t", 1): i}, float(i))
    store.record_heads({("t", 2): 1}, 1.0)
    seen = []

    def keep(rows, max_entries):
        seen.append(rows)
        return newest_first_keep(rows, max_entries)

    assert store.thin_heads(4, keep) == 12
    assert seen[0] == [(i * 10, float(i), float(i)) for i in range(10)]  # oldest first
    assert [r[0] for r in head_rows(db_path)] == [60, 70, 80, 90]
    assert store.thin_heads(4, keep) == 0
    assert store.thin_heads(1, lambda rows, n: set()) == 6  # the newest row is always kept
    assert store.latest_heads() == {
        ("t", 0): HeadRow(90, 9.0, 9.0),
        ("t", 1): HeadRow(9, 9.0, 9.0),
        ("t", 2): HeadRow(1, 1.0, 1.0),
    }


def test_thin_commits(store, db_path):
    for i in range(6):
        store.record_commits({("g", "t", 0): i, ("g", "t", 1): 0}, float(i))
    rows_given = []
    assert store.thin_commits(3, lambda rows, n: rows_given.append(rows) or {0, 5}) == 4
    assert rows_given == [[(i, float(i), float(i)) for i in range(6)]]
    assert raw(db_path, "SELECT committed_offset FROM consumer_commits WHERE partition = 0") == [(0,), (5,)]
    assert raw(db_path, "SELECT first_seen, last_seen FROM consumer_commits WHERE partition = 1") == [
        (0.0, 5.0)
    ]


def test_prune_anchors(store, db_path):
    store.record_commits({("g1", "t", 0): 20, ("g2", "t", 0): 50}, 1.0)
    store.record_commits({("g1", "t", 0): 30}, 2.0)  # g1's latest is 30, its older row (20) must not count
    for o in (10, 25, 30, 40, 60):
        store.put_anchor("t", 0, o, float(o), True)
    store.put_anchor("t", 1, 5, 1.0, True)  # partition without commits: dropped
    assert store.prune_anchors() == 3
    assert raw(db_path, "SELECT partition, offset FROM partition_anchors ORDER BY 1, 2") == [
        (0, 30),
        (0, 40),
        (0, 60),
    ]


def test_purge_absent_groups(store, db_path):
    store.save_group_status(
        [
            GroupStatus("old", "t", "offline", 1.0, "", 0, None, None, 10.0, 5.0),
            GroupStatus("new", "t", "online", 1.0, "", 0, None, None, 100.0, 0.0),
            GroupStatus("never", "t", "online", 1.0, "", 0, None, None, None, None),
        ]
    )
    store.record_commits({("old", "t", 0): 1, ("new", "t", 0): 1, ("old", "u", 0): 1}, 1.0)
    store.add_transitions([Transition("old", "t", 1.0, "online", "offline", "x")])
    assert store.purge_absent_groups(50.0) == 1
    assert set(store.group_statuses()) == {("new", "t"), ("never", "t")}
    assert raw(db_path, "SELECT group_id, topic FROM consumer_commits ORDER BY 1, 2") == [
        ("new", "t"),
        ("old", "u"),
    ]
    assert raw(db_path, "SELECT count(*) FROM group_transitions") == [(0,)]


def test_maintenance_and_integrity(store, db_path):
    for i in range(20):
        store.record_heads({("t", p): i for p in range(500)}, float(i))
    store.delete_topic("t")
    before = store._conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert before > 10
    m = store.maintenance(vacuum_pages=5)
    assert set(m) == {"db_bytes", "wal_bytes", "freelist_pages", "checkpoint"}
    assert m["freelist_pages"] == before - 5
    assert len(m["checkpoint"]) == 3 and m["checkpoint"][0] == 0
    m = store.maintenance()
    assert m["freelist_pages"] == 0
    assert m["db_bytes"] == os.path.getsize(db_path) > 0
    assert store.integrity_check() == "ok"


def test_transitions_are_listed_and_pruned_by_age(tmp_path):
    from lagmon.store import Store, Transition

    store = Store(str(tmp_path / "t.db"))
    store.add_transitions(
        [
            Transition("g", "t", 100.0, "online", "offline", "static"),
            Transition("g", "t", 200.0, "offline", "online", "advanced"),
            Transition("h", "t", 150.0, "online", "offline", "static"),
        ]
    )
    assert [x.at for x in store.transitions("g", "t")] == [100.0, 200.0]
    assert store.prune_transitions(160.0) == 2
    assert [x.at for x in store.transitions("g", "t")] == [200.0]
    assert store.transitions("h", "t") == []
    store.close()

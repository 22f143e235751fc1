"""lagmon.store on real temporary SQLite files (no mocks)."""

import sqlite3
import time

import pytest

from lagmon.store import (
    SCHEMA_VERSION,
    GroupStatus,
    HeadRow,
    StageState,
    Store,
    StoreError,
    Transition,
)
from tests.store_tools import head_rows, raw


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "lagmon.db")


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


# --- opening, pragmas, migrations -------------------------------------------------------------


def test_pragmas_took_effect(store, db_path):
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 64 * 1024 * 1024
    assert raw(db_path, "PRAGMA auto_vacuum") == [(2,)]  # persisted in the file, not just the connection


def test_tables_exist(store, db_path):
    names = {r[0] for r in raw(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {
        "schema_version",
        "partition_offsets",
        "partition_anchors",
        "consumer_commits",
        "latest_commits",
        "group_status",
        "group_transitions",
        "excluded_topics",
        "excluded_groups",
        "stage_state",
        "group_figures",
        "listing_state",
        "stage_figures",
        "history_epoch",
    }


def test_migrations_idempotent(db_path):
    with Store(db_path) as s:
        s.record_heads({("t", 0): 5}, 1.0)
    with Store(db_path) as s:
        assert s.latest_heads() == {("t", 0): HeadRow(5, 1.0, 1.0)}
    assert raw(db_path, "SELECT version FROM schema_version") == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_a_version_1_database_migrates_and_keeps_its_commits(db_path):
    import sqlite3

    from lagmon.store import MIGRATIONS

    conn = sqlite3.connect(db_path, isolation_level=None)
    for stmt in MIGRATIONS[0]:
        conn.execute(stmt)
    conn.execute("INSERT INTO schema_version(version) VALUES (1)")
    conn.executemany(
        "INSERT INTO consumer_commits VALUES (?, ?, ?, ?, ?, ?)",
        [("g", "t", 0, 10.0, 5, 20.0), ("g", "t", 0, 30.0, 7, 40.0), ("g", "t", 1, 10.0, 3, 40.0)],
    )
    conn.execute("INSERT INTO partition_offsets VALUES ('t', 0, 9, 35.0, 40.0)")
    conn.close()
    with Store(db_path) as s:
        got = {(i.partition, i.committed, i.commit_first_seen, i.commit_last_seen) for i in s.lag_inputs()}
        assert got == {(0, 7, 30.0, 40.0), (1, 3, 10.0, 40.0)}
        assert s.record_commits({("g", "t", 0): 8}, 50.0) == {("g", "t", 0)}
    # the history survived the rebuild into time order (migration 4), the new row at its end
    assert raw(
        db_path, "SELECT partition, first_seen, committed_offset, last_seen FROM consumer_commits"
    ) == [(0, 10.0, 5, 20.0), (1, 10.0, 3, 40.0), (0, 30.0, 7, 40.0), (0, 50.0, 8, 50.0)]


def test_a_version_2_database_migrates_and_keeps_its_statuses(db_path):
    import sqlite3

    from lagmon.store import MIGRATIONS

    conn = sqlite3.connect(db_path, isolation_level=None)
    for version in (0, 1):
        for stmt in MIGRATIONS[version]:
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version(version) VALUES (?)", (version + 1,))
    conn.execute(
        "INSERT INTO group_status VALUES ('g', 't', 'offline', 1.0, 'static', 3, 2.0, 62.0, 2.0, 40.0)"
    )
    conn.close()
    with Store(db_path) as s:
        assert s.group_statuses() == {
            ("g", "t"): GroupStatus("g", "t", "offline", 1.0, "static", 3, 2.0, 62.0, 2.0, 40.0, None)
        }


def test_group_status_keeps_its_lag_summary(store, db_path):
    from lagmon.timelag import LagSummary

    summary = LagSummary(4, (100.5, 2, True), True, (3.25, 1, False, 200.0), 201.0)
    store.save_group_status([GroupStatus("g", "t", "online", 1.0, "", 0, 2.0, 3.0, 2.0, 7.0, summary)])
    assert store.group_statuses()[("g", "t")].lag_summary == summary
    # an unreadable summary (hand-edited, truncated) is None: the reporter recomputes that group
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE group_status SET lag_summary = '[1, 2'")
    conn.close()
    assert store.group_statuses()[("g", "t")].lag_summary is None


def test_newer_schema_is_refused(db_path):
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(
        StoreError,
        match=rf"schema version {SCHEMA_VERSION + 1} is newer than this lagmon supports \({SCHEMA_VERSION}\)",
    ) as e:
        Store(db_path)
    assert db_path in str(e.value)


def test_garbage_file_is_refused_and_left_alone(db_path):
    garbage = b"this is not a database, it is someone's notes\n" * 100
    with open(db_path, "wb") as f:
        f.write(garbage)
    with pytest.raises(StoreError, match="file is not a database") as e:
        Store(db_path)
    assert db_path in str(e.value)
    with open(db_path, "rb") as f:
        assert f.read() == garbage


def test_foreign_sqlite_database_is_refused(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE precious(x)")
    conn.execute("INSERT INTO precious VALUES (42)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a lagmon database"):
        Store(db_path)
    assert raw(db_path, "SELECT * FROM precious") == [(42,)]
    assert raw(db_path, "SELECT name FROM sqlite_master") == [("precious",)]


def test_missing_parent_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(StoreError, match="does not exist") as e:
        Store(str(missing / "x.db"))
    assert str(missing) in str(e.value)
    assert not missing.exists()


def test_directory_as_path(tmp_path):
    with pytest.raises(StoreError, match=str(tmp_path)):
        Store(str(tmp_path))


# --- record_heads ------------------------------------------------------------------------------


def test_record_heads_insert_update_and_reset(store, db_path):
    assert store.record_heads({("t", 0): 10, ("t", 1): 3}, 1.0) == []
    assert store.record_heads({("t", 0): 10, ("t", 1): 4}, 2.0) == []  # idle head: last_seen moves
    assert head_rows(db_path) == [(10, 1.0, 2.0)]
    assert store.record_heads({("t", 0): 15}, 3.0) == []  # head moved: new row
    assert head_rows(db_path) == [(10, 1.0, 2.0), (15, 3.0, 3.0)]
    store.put_anchor("t", 0, 12, 2.5, True)
    store.put_anchor("t", 1, 2, 0.5, False)
    assert store.record_heads({("t", 0): 7, ("t", 1): 4}, 4.0) == [("t", 0)]  # head went DOWN: reset
    assert head_rows(db_path) == [(7, 4.0, 4.0)]
    assert raw(db_path, "SELECT topic, partition, offset FROM partition_anchors") == [("t", 1, 2)]
    assert head_rows(db_path, "t", 1) == [(3, 1.0, 1.0), (4, 2.0, 4.0)]
    assert store.latest_heads() == {("t", 0): HeadRow(7, 4.0, 4.0), ("t", 1): HeadRow(4, 2.0, 4.0)}


def test_record_heads_10000_partitions_is_fast(store):
    heads = {(f"topic{i // 100}", i % 100): 1000 + i for i in range(10_000)}
    store.record_heads(heads, 1.0)
    heads = {k: o + (k[1] % 2) for k, o in heads.items()}  # half update last_seen, half insert
    t0 = time.perf_counter()
    store.record_heads(heads, 2.0)
    elapsed = time.perf_counter() - t0
    assert len(store.latest_heads()) == 10_000
    assert elapsed < 1.0, f"record_heads of 10,000 partitions took {elapsed:.3f}s"


# --- record_commits ----------------------------------------------------------------------------


def test_record_commits_advanced_semantics(store, db_path):
    k = ("g", "t", 0)
    assert store.record_commits({k: 10}, 1.0) == set()  # first row: not advanced
    assert store.record_commits({k: 10}, 2.0) == set()  # same offset: last_seen updated
    assert store.record_commits({k: 12}, 3.0) == {k}  # higher: advanced, new row
    assert store.record_commits({k: 11}, 4.0) == set()  # lower (reset by tool): new row, not advanced
    assert raw(
        db_path, "SELECT first_seen, committed_offset, last_seen FROM consumer_commits ORDER BY first_seen"
    ) == [(1.0, 10, 2.0), (3.0, 12, 3.0), (4.0, 11, 4.0)]
    [li] = store.lag_inputs()
    assert (li.committed, li.commit_first_seen, li.commit_last_seen) == (11, 4.0, 4.0)


def test_record_commits_same_time_twice_replaces(store, db_path):
    k = ("g", "t", 0)
    store.record_commits({k: 10}, 1.0)
    assert store.record_commits({k: 11}, 1.0) == {k}
    assert raw(db_path, "SELECT first_seen, committed_offset, last_seen FROM consumer_commits") == [
        (1.0, 11, 1.0)
    ]


# --- other writes and reads --------------------------------------------------------------------


def test_group_status_transitions_excluded_and_stage_state(store, db_path):
    gs = GroupStatus("g", "t", "online", 1.0, "new", 0, 1.0, 61.0, 1.0, 0.0)
    store.save_group_status([gs, GroupStatus("h", "t", "offline", 2.0, "static", 3, None, None, None, None)])
    gs.state, gs.static_samples = "offline", 3
    store.save_group_status([gs])
    assert store.group_statuses()[("g", "t")] == gs
    assert len(store.group_statuses()) == 2
    store.add_transitions([Transition("g", "t", 5.0, "online", "offline", "static for 3 samples")])
    assert raw(db_path, "SELECT * FROM group_transitions") == [
        ("g", "t", 5.0, "online", "offline", "static for 3 samples")
    ]
    store.mark_excluded({"__consumer_offsets": "__.*"}, {"tmp-1": "tmp-.*"}, 1.0)
    store.mark_excluded({"__consumer_offsets": "_.*"}, {}, 2.0)
    assert store.excluded() == ({"__consumer_offsets": "_.*"}, {"tmp-1": "tmp-.*"})
    assert raw(db_path, "SELECT first_seen FROM excluded_topics") == [(1.0,)]
    store.heartbeat("sampler", pid=11, started_at=1.0, at=2.0, interval=60.0, success=True)
    store.heartbeat("sampler", pid=11, started_at=1.0, at=3.0, interval=60.0, success=False, error="boom")
    assert store.stage_states() == {"sampler": StageState("sampler", 11, 1.0, 3.0, 2.0, "boom", 3.0, 60.0)}
    store.heartbeat("sampler", pid=12, started_at=4.0, at=5.0, interval=30.0, success=True)
    assert store.stage_states()["sampler"] == StageState("sampler", 12, 4.0, 5.0, 5.0, "boom", 3.0, 30.0)


def test_delete_topic(store, db_path):
    store.record_heads({("t", 0): 5, ("u", 0): 5}, 1.0)
    store.put_anchor("t", 0, 3, 0.5, True)
    store.record_commits({("g", "t", 0): 3, ("g", "u", 0): 3}, 1.0)
    store.save_group_status([GroupStatus("g", t, "online", 1.0, "", 0, None, None, 1.0, 0.0) for t in "tu"])
    store.add_transitions([Transition("g", "t", 1.0, "online", "offline", "x")])
    store.delete_topic("t")
    for table in (
        "partition_offsets",
        "partition_anchors",
        "consumer_commits",
        "group_status",
        "group_transitions",
    ):
        assert raw(db_path, f"SELECT count(*) FROM {table} WHERE topic = 't'") == [(0,)]
    assert [x.topic for x in store.lag_inputs()] == ["u"]

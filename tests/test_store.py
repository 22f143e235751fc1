"""lagmon.store on real temporary SQLite files (no mocks)."""

import os
import sqlite3
import tempfile
import time
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lagmon.store import (
    LAG_INPUTS_ALL,
    LAG_INPUTS_WANTED,
    SCHEMA_VERSION,
    GroupStatus,
    HeadRow,
    LagInput,
    StageState,
    Store,
    StoreError,
    Transition,
)


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "lagmon.db")


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


from tests.helpers import raw  # noqa: E402


def newest_first_keep(rows, max_entries):
    return set(range(len(rows) - max_entries, len(rows)))


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
    conn.execute("INSERT INTO schema_version(version) VALUES (7)")
    conn.commit()
    conn.close()
    with pytest.raises(
        StoreError, match=rf"schema version 7 is newer than this lagmon supports \({SCHEMA_VERSION}\)"
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


def head_rows(path, topic="t", partition=0):
    return raw(
        path,
        "SELECT offset, first_seen, last_seen FROM partition_offsets"
        " WHERE topic = ? AND partition = ? ORDER BY offset",
        (topic, partition),
    )


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


def test_sample_writes_never_scan_history_tables(store):
    store.record_heads({("t", p): 10 for p in range(20)}, 1.0)
    store.record_commits({("g", "t", p): 5 for p in range(20)}, 1.0)
    statements = []
    store._conn.set_trace_callback(statements.append)
    store.record_heads(
        {("t", p): 10 + p % 2 for p in range(20)} | {("t", 0): 3}, 2.0
    )  # update, insert, reset
    store.record_commits({("g", "t", p): 5 + p % 2 for p in range(20)}, 2.0)
    store._conn.set_trace_callback(None)
    plans = [
        r[3]
        for sql in statements
        if not sql.startswith(("BEGIN", "COMMIT", "DELETE FROM temp"))
        for r in store._conn.execute("EXPLAIN QUERY PLAN " + sql)
    ]
    assert any("USING PRIMARY KEY" in line for line in plans)
    scans = {line for line in plans if line.startswith("SCAN")}
    assert scans <= {"SCAN i", "SCAN temp.in_heads", "SCAN temp.in_commits"}, plans


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


# --- lag_inputs: model-based property test against a brute-force reference ---------------------

TOPICS, PARTITIONS, GROUPS = ("a", "b"), (0, 1), ("g1", "g2")
offsets = st.integers(0, 30)
heads_op = st.tuples(
    st.just("heads"),
    st.dictionaries(st.tuples(st.sampled_from(TOPICS), st.sampled_from(PARTITIONS)), offsets, max_size=4),
)
commits_op = st.tuples(
    st.just("commits"),
    st.dictionaries(
        st.tuples(st.sampled_from(GROUPS), st.sampled_from(TOPICS), st.sampled_from(PARTITIONS)),
        offsets,
        max_size=8,
    ),
)
anchor_op = st.tuples(
    st.just("anchor"),
    st.tuples(
        st.sampled_from(TOPICS),
        st.sampled_from(PARTITIONS),
        offsets,
        st.floats(0, 1000, allow_nan=False),
        st.booleans(),
    ),
)
ops = st.lists(st.one_of(heads_op, heads_op, commits_op, anchor_op), max_size=40)


def reference_lag_inputs(path, wanted=None):
    heads, anchors, commits = defaultdict(list), defaultdict(list), defaultdict(list)
    for t, p, o, f, s in raw(
        path, "SELECT topic, partition, offset, first_seen, last_seen FROM partition_offsets"
    ):
        heads[(t, p)].append((o, f, s))
    for t, p, o, ts in raw(path, "SELECT topic, partition, offset, timestamp FROM partition_anchors"):
        anchors[(t, p)].append((o, ts))
    open_runs = {
        (g, t, p, f): s
        for g, t, p, f, s in raw(
            path, "SELECT group_id, topic, partition, first_seen, last_seen FROM latest_commits"
        )
    }
    for g, t, p, f, c, s in raw(path, "SELECT * FROM consumer_commits"):
        commits[(g, t, p)].append((f, c, open_runs.get((g, t, p, f), s)))  # an open run's last_seen
    out = []
    for (g, t, p), rows in commits.items():
        if wanted is not None and (g, t) not in wanted:
            continue
        f, c, s = max(rows)
        hs, an = heads[(t, p)], anchors[(t, p)]
        below = max((h for h in hs if h[0] <= c), default=None)
        above = min((h for h in hs if h[0] > c), default=None)
        a_below = max((a for a in an if a[0] <= c), default=None)
        a_above = min((a for a in an if a[0] >= c), default=None)
        oldest = min(hs, default=None)
        out.append(
            LagInput(
                g,
                t,
                p,
                c,
                f,
                s,
                max((h[0] for h in hs), default=None),
                below and (below[0], below[2]),
                above and (above[0], above[1]),
                a_below,
                a_above,
                oldest and (oldest[0], oldest[1]),
                below and below[1],
            )
        )
    return sorted(out, key=repr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=ops,
    wanted=st.none() | st.sets(st.tuples(st.sampled_from(GROUPS + ("nobody",)), st.sampled_from(TOPICS))),
)
def test_store_matches_model_and_lag_inputs_matches_reference(ops, wanted):
    heads_model, anchors_model, commits_model = defaultdict(list), defaultdict(dict), defaultdict(list)
    with tempfile.TemporaryDirectory() as d, Store(os.path.join(d, "x.db")) as s:
        path = os.path.join(d, "x.db")
        for i, (kind, arg) in enumerate(ops):
            at = 100.0 + 10 * i
            if kind == "heads":
                expect_reset = []
                for key, o in arg.items():
                    rows = heads_model[key]
                    if rows and o < rows[-1][0]:
                        expect_reset.append(key)
                        rows.clear()
                        anchors_model[key].clear()
                    if rows and rows[-1][0] == o:
                        rows[-1][2] = at
                    else:
                        rows.append([o, at, at])
                assert sorted(s.record_heads(arg, at)) == sorted(expect_reset)
            elif kind == "commits":
                expect_adv = set()
                for key, c in arg.items():
                    rows = commits_model[key]
                    if rows and rows[-1][1] == c:
                        rows[-1][2] = at
                    else:
                        if rows and c > rows[-1][1]:
                            expect_adv.add(key)
                        rows.append([at, c, at])
                assert s.record_commits(arg, at) == expect_adv
            else:
                t, p, o, ts, exact = arg
                anchors_model[(t, p)][o] = ts
                s.put_anchor(t, p, o, ts, exact)
        assert raw(
            path,
            "SELECT topic, partition, offset, first_seen, last_seen FROM partition_offsets ORDER BY 1, 2, 3",
        ) == sorted((*k, *r) for k, rows in heads_model.items() for r in rows)
        # the open run's last_seen lives in latest_commits (the history row gets it when the run ends)
        assert raw(
            path,
            """SELECT c.group_id, c.topic, c.partition, c.first_seen, c.committed_offset,
                                   CASE WHEN l.first_seen = c.first_seen THEN l.last_seen ELSE c.last_seen END
                            FROM consumer_commits c JOIN latest_commits l USING (group_id, topic, partition)
                            ORDER BY 1, 2, 3, 4""",
        ) == sorted((*k, *r) for k, rows in commits_model.items() for r in rows)
        assert raw(
            path, "SELECT topic, partition, offset, timestamp FROM partition_anchors ORDER BY 1, 2, 3"
        ) == sorted((*k, o, ts) for k, a in anchors_model.items() for o, ts in a.items())
        assert sorted(s.lag_inputs(wanted), key=repr) == reference_lag_inputs(path, wanted)


def test_lag_inputs_example(store):
    store.record_heads({("t", 0): 10}, 1.0)
    store.record_heads({("t", 0): 10}, 2.0)
    store.record_heads({("t", 0): 20}, 3.0)
    store.record_heads({("t", 0): 30}, 4.0)
    store.put_anchor("t", 0, 15, 2.7, True)
    store.record_commits({("g", "t", 0): 15, ("g", "u", 0): 1}, 4.0)
    assert sorted(store.lag_inputs(), key=lambda x: x.topic) == [
        LagInput(
            "g",
            "t",
            0,
            15,
            4.0,
            4.0,
            newest_head=30,
            head_below=(10, 2.0),
            head_above=(20, 3.0),
            anchor_below=(15, 2.7),
            anchor_above=(15, 2.7),
            oldest_head=(10, 1.0),
            head_below_since=1.0,
        ),
        LagInput("g", "u", 0, 1, 4.0, 4.0, None, None, None, None, None, None),
    ]
    assert [x.topic for x in store.lag_inputs({("g", "u")})] == ["u"]
    assert store.lag_inputs([]) == []


@pytest.mark.parametrize("sql", [LAG_INPUTS_ALL, LAG_INPUTS_WANTED])
def test_lag_inputs_brackets_use_primary_key(store, sql):
    store.record_heads({("t", p): 100 for p in range(50)}, 1.0)
    store.record_commits({("g", "t", p): 50 for p in range(50)}, 1.0)
    plan = [r[3] for r in store._conn.execute("EXPLAIN QUERY PLAN " + sql)]
    bracket = [
        line
        for line in plan
        if "partition_offsets" in line
        or "partition_anchors" in line
        or line.split(" ")[1:2] in (["hb"], ["ha"], ["ab"], ["aa"], ["ho"])
    ]
    assert len(bracket) == 11, plan  # 5 joined rows + 6 seeks (newest, 2 head, 2 anchor brackets, oldest)
    assert all(
        line.startswith("SEARCH") and "USING PRIMARY KEY (topic=? AND partition=?" in line for line in bracket
    ), plan
    assert not [
        line for line in plan if line.startswith("SCAN") and line not in ("SCAN l", "SCAN latest_commits")
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

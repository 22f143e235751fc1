"""lagmon.store queries: lag_inputs against a brute-force reference, and the query plans of the
hot paths (no SCAN of a history table, key seeks where the brackets are read)."""

import os
import re
import tempfile
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lagmon.store import (
    LAG_INPUTS_ALL,
    LAG_INPUTS_WANTED,
    LagInput,
    Store,
)
from tests.store_tools import raw


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "lagmon.db")


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


HISTORY_TABLES = ("partition_offsets", "partition_anchors", "consumer_commits", "latest_commits")
_NAMED = re.compile(r"\b(" + "|".join(HISTORY_TABLES) + r")\b(?:\s+(?:AS\s+)?(\w+))?", re.IGNORECASE)
_SQL_WORDS = {
    "where",
    "on",
    "set",
    "join",
    "left",
    "inner",
    "group",
    "order",
    "values",
    "select",
    "using",
    "limit",
}


def plan(conn, sql: str) -> list[tuple[str, str, str]]:
    """EXPLAIN QUERY PLAN as (SCAN or SEARCH, table, detail) for each line that reads a table.

    Only the first word and the table name are relied on (``SCAN t``, ``SCAN TABLE t`` in older
    SQLite); aliases in ``sql`` are resolved to the table they name."""
    aliases = {}
    for table, alias in _NAMED.findall(sql):
        aliases[table.lower()] = table.lower()
        if alias and alias.lower() not in _SQL_WORDS:
            aliases[alias.lower()] = table.lower()
    out = []
    for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
        words = row[3].split()
        if len(words) < 2 or words[0] not in ("SCAN", "SEARCH"):
            continue
        name = words[2] if words[1] == "TABLE" and len(words) > 2 else words[1]
        name = name.lower().removeprefix("main.").removeprefix("temp.")
        out.append((words[0], aliases.get(name, name), row[3]))
    return out


def history_scans(lines, allowed=()):
    return [
        d for kind, table, d in lines if kind == "SCAN" and table in HISTORY_TABLES and table not in allowed
    ]


def by_key(detail: str, *columns: str) -> bool:
    """The line reads through a primary key or index, constrained on each of ``columns``
    (a key walked with no constraint reads the whole table)."""
    m = re.search(r"USING .*?(PRIMARY KEY|INDEX)\b[^(]*(\((.*)\))?", detail)
    if m is None:
        return False
    used = re.findall(r"(\w+)\s*[=<>]", m.group(3) or "")
    return all(c in used for c in columns)


def test_plan_helper_sees_a_history_scan(store):
    """The checks below can fail: a query that must read the whole history is reported."""
    lines = plan(store._conn, "SELECT * FROM consumer_commits c WHERE c.last_seen = 1")
    assert history_scans(lines) == [lines[0][2]] and lines[0][1] == "consumer_commits"
    lines = plan(store._conn, "SELECT * FROM partition_offsets WHERE topic = 't' AND partition = 0")
    assert (
        history_scans(lines) == [] and lines[0][0] == "SEARCH" and by_key(lines[0][2], "topic", "partition")
    )
    lines = plan(store._conn, "SELECT max(offset) FROM partition_offsets WHERE topic || '' = 't'")
    assert not by_key(lines[0][2], "topic")  # the key walked without a constraint


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
    lines = [
        line
        for sql in statements
        if not sql.startswith(("BEGIN", "COMMIT", "DELETE FROM temp"))
        for line in plan(store._conn, sql)
    ]
    assert not history_scans(lines), lines
    searched = {table for kind, table, d in lines if kind == "SEARCH" and by_key(d)}
    assert {"partition_offsets", "partition_anchors", "latest_commits"} <= searched, lines


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
    lines = plan(store._conn, sql)
    # the outer loop over latest_commits is the only scan (all of it for LAG_INPUTS_ALL)
    assert not history_scans(lines, allowed=("latest_commits",)), lines
    bracket = [(kind, d) for kind, table, d in lines if table in ("partition_offsets", "partition_anchors")]
    # 5 joined rows (hb, ha, ab, aa, ho) + 6 seeks (newest, 2 head, 2 anchor brackets, oldest)
    assert len(bracket) == 11, lines
    assert all(kind == "SEARCH" and by_key(d, "topic", "partition") for kind, d in bracket), lines
    for alias in ("hb", "ha", "ab", "aa", "ho"):
        assert any(d.split()[1:2] == [alias] or f" {alias} " in d for _, d in bracket), (alias, lines)

"""The only module with SQL: one WAL-mode SQLite file shared by the sampler,
reporter and housekeeper processes.

Every write is ONE short ``BEGIN IMMEDIATE ... COMMIT`` (``Store._write``);
reads that need a consistent view run in one short deferred transaction
(``Store._read``). Table definitions are module constants, migrations are
recorded in ``schema_version``, each together with its record.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import NamedTuple

import orjson

from lagmon.timelag import LagSummary

SCHEMA_VERSION = 4
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# How long opening waits for another process's write, migrations included: rebuilding a big
# history in a new layout takes seconds to a minute, and a stage started meanwhile must wait
# for it rather than fail (supervisord would give up on it after a few quick exits).
OPEN_WAIT_SECONDS = 300.0

Keep = Callable[[list[tuple[int, float, float]], int], set[int]]


class StoreError(Exception):
    """The database cannot be used: the message names the path and the rule."""


@dataclass(frozen=True)
class HeadRow:
    offset: int
    first_seen: float
    last_seen: float


class LagInput(NamedTuple):  # a tuple: one is built per group-partition per sample
    group_id: str
    topic: str
    partition: int
    committed: int
    commit_first_seen: float
    commit_last_seen: float
    newest_head: int | None
    head_below: tuple[int, float] | None  # (offset, last_seen), max head offset <= committed
    head_above: tuple[int, float] | None  # (offset, first_seen), min head offset > committed
    anchor_below: tuple[int, float] | None  # (offset, timestamp), max anchor offset <= committed
    anchor_above: tuple[int, float] | None  # (offset, timestamp), min anchor offset >= committed
    oldest_head: tuple[int, float] | None  # (offset, first_seen) of the min-offset head row
    head_below_since: float | None = None  # first_seen of the head_below row


@dataclass
class GroupStatus:
    group_id: str
    topic: str
    state: str
    since: float
    reason: str
    static_samples: int
    last_sampled: float | None
    next_sample: float | None
    last_present: float | None
    lag_seconds: float | None
    # What the lag at any later time depends on, computed by the sampler (timelag.summarize);
    # None until the sampler has sampled the group/topic with this schema.
    lag_summary: LagSummary | None = None


@dataclass(frozen=True)
class Transition:
    group_id: str
    topic: str
    at: float
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True)
class StageState:
    stage: str
    pid: int
    started_at: float
    heartbeat_at: float
    last_success: float | None
    last_error: str | None
    last_error_at: float | None
    interval: float


def _columns(cls: type) -> str:
    return ", ".join(f.name for f in fields(cls))


def _row(obj: object) -> tuple:
    return tuple(getattr(obj, f.name) for f in fields(obj))


# --- schema ---------------------------------------------------------------------------------

SCHEMA_VERSION_TABLE = "CREATE TABLE schema_version(version INTEGER NOT NULL)"
PARTITION_OFFSETS_TABLE = """CREATE TABLE partition_offsets(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID"""
PARTITION_ANCHORS_TABLE = """CREATE TABLE partition_anchors(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    timestamp REAL NOT NULL, exact INTEGER NOT NULL,
    PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID"""
CONSUMER_COMMITS_TABLE = """CREATE TABLE consumer_commits(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, first_seen REAL NOT NULL,
    committed_offset INTEGER NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY(group_id, topic, partition, first_seen)) WITHOUT ROWID"""
# The newest consumer_commits row of every key, kept by record_commits: what the lag is computed
# from, read without grouping the whole history (migration 2).
LATEST_COMMITS_TABLE = """CREATE TABLE latest_commits(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY(group_id, topic, partition)) WITHOUT ROWID"""
LATEST_COMMITS_FILL = """INSERT INTO latest_commits(group_id, topic, partition, committed_offset, first_seen, last_seen)
    SELECT group_id, topic, partition, committed_offset, max(first_seen), last_seen
    FROM consumer_commits GROUP BY group_id, topic, partition"""
GROUP_STATUS_TABLE = """CREATE TABLE group_status(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, state TEXT NOT NULL, since REAL, reason TEXT,
    static_samples INTEGER, last_sampled REAL, next_sample REAL, last_present REAL, lag_seconds REAL,
    PRIMARY KEY(group_id, topic))"""
# Migration 4: the commit history in time order. A sample's new rows all share first_seen, so
# they go to the end of the table (and next to each other in the (group_id, topic) index)
# instead of to one random page per group-partition: on a database at the housekeeper's limits
# that was 180 MB of WAL per sample of 20,000 moving commits. Same columns, same order.
CONSUMER_COMMITS_V4 = [
    """CREATE TABLE consumer_commits_v4(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, first_seen REAL NOT NULL,
    committed_offset INTEGER NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY(first_seen, group_id, topic, partition)) WITHOUT ROWID""",
    """INSERT INTO consumer_commits_v4(group_id, topic, partition, first_seen, committed_offset, last_seen)
    SELECT group_id, topic, partition, first_seen, committed_offset, last_seen FROM consumer_commits""",
    "DROP TABLE consumer_commits",
    "ALTER TABLE consumer_commits_v4 RENAME TO consumer_commits",
    "CREATE INDEX consumer_commits_pair ON consumer_commits(group_id, topic)",
]
# Migration 3: the sampler's timelag.LagSummary of each group/topic, as a JSON array.
GROUP_STATUS_SUMMARY = "ALTER TABLE group_status ADD COLUMN lag_summary TEXT"
GROUP_TRANSITIONS_TABLE = """CREATE TABLE group_transitions(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, at REAL NOT NULL,
    from_state TEXT, to_state TEXT, reason TEXT)"""
GROUP_TRANSITIONS_INDEX = "CREATE INDEX group_transitions_key ON group_transitions(group_id, topic, at)"
EXCLUDED_TOPICS_TABLE = "CREATE TABLE excluded_topics(topic TEXT PRIMARY KEY, pattern TEXT, first_seen REAL)"
EXCLUDED_GROUPS_TABLE = (
    "CREATE TABLE excluded_groups(group_id TEXT PRIMARY KEY, pattern TEXT, first_seen REAL)"
)
STAGE_STATE_TABLE = """CREATE TABLE stage_state(
    stage TEXT PRIMARY KEY, pid INTEGER, started_at REAL, heartbeat_at REAL,
    last_success REAL, last_error TEXT, last_error_at REAL, interval REAL)"""

# MIGRATIONS[i] brings the schema from version i to version i + 1.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        SCHEMA_VERSION_TABLE,
        PARTITION_OFFSETS_TABLE,
        PARTITION_ANCHORS_TABLE,
        CONSUMER_COMMITS_TABLE,
        GROUP_STATUS_TABLE,
        GROUP_TRANSITIONS_TABLE,
        GROUP_TRANSITIONS_INDEX,
        EXCLUDED_TOPICS_TABLE,
        EXCLUDED_GROUPS_TABLE,
        STAGE_STATE_TABLE,
    ),
    (LATEST_COMMITS_TABLE, LATEST_COMMITS_FILL),
    (GROUP_STATUS_SUMMARY,),
    tuple(CONSUMER_COMMITS_V4),
]
assert len(MIGRATIONS) == SCHEMA_VERSION

# Per-connection scratch tables (temp schema: writing them never locks the shared file).
TEMP_TABLES = (
    """CREATE TEMP TABLE IF NOT EXISTS in_heads(topic TEXT, partition INTEGER, offset INTEGER,
        PRIMARY KEY(topic, partition)) WITHOUT ROWID""",
    """CREATE TEMP TABLE IF NOT EXISTS in_commits(group_id TEXT, topic TEXT, partition INTEGER,
        committed_offset INTEGER, prev_offset INTEGER, prev_first_seen REAL, prev_last_seen REAL,
        PRIMARY KEY(group_id, topic, partition)) WITHOUT ROWID""",
    """CREATE TEMP TABLE IF NOT EXISTS want_pairs(group_id TEXT, topic TEXT,
        PRIMARY KEY(group_id, topic)) WITHOUT ROWID""",
)

# --- queries --------------------------------------------------------------------------------

_LATEST_COMMITS = """SELECT group_id, topic, partition, committed_offset, first_seen, last_seen
    FROM latest_commits {where}"""
_WANTED = "WHERE (group_id, topic) IN (SELECT group_id, topic FROM temp.want_pairs)"


def _seek(table: str, agg: str, cond: str = "") -> str:
    """Correlated min/max over the (topic, partition, offset) primary key: one index seek."""
    return (
        f"(SELECT {agg}(offset) FROM {table} WHERE topic = l.topic AND partition = l.partition"
        f"{' AND offset ' + cond if cond else ''})"
    )


def _join(alias: str, table: str, agg: str, cond: str = "") -> str:
    return (
        f"LEFT JOIN {table} {alias} ON {alias}.topic = l.topic AND {alias}.partition = l.partition"
        f" AND {alias}.offset = {_seek(table, agg, cond)}"
    )


LAG_INPUTS_SQL = f"""WITH l AS ({{latest}})
SELECT l.group_id, l.topic, l.partition, l.committed_offset, l.first_seen, l.last_seen,
       {_seek("partition_offsets", "max")},
       hb.offset, hb.last_seen, ha.offset, ha.first_seen,
       ab.offset, ab.timestamp, aa.offset, aa.timestamp, ho.offset, ho.first_seen, hb.first_seen
FROM l
{_join("hb", "partition_offsets", "max", "<= l.committed_offset")}
{_join("ha", "partition_offsets", "min", "> l.committed_offset")}
{_join("ab", "partition_anchors", "max", "<= l.committed_offset")}
{_join("aa", "partition_anchors", "min", ">= l.committed_offset")}
{_join("ho", "partition_offsets", "min")}"""
LAG_INPUTS_ALL = LAG_INPUTS_SQL.format(latest=_LATEST_COMMITS.format(where=""))
LAG_INPUTS_WANTED = LAG_INPUTS_SQL.format(latest=_LATEST_COMMITS.format(where=_WANTED))

_PRUNE_ANCHORS = """WITH floor AS (
        SELECT topic, partition, min(committed_offset) AS c FROM latest_commits GROUP BY topic, partition)
DELETE FROM partition_anchors WHERE offset < coalesce(
    (SELECT c FROM floor f WHERE f.topic = partition_anchors.topic AND f.partition = partition_anchors.partition),
    9223372036854775807)"""


def _status_row(status: GroupStatus) -> tuple:
    summary = status.lag_summary
    return (*_row(status)[:-1], None if summary is None else orjson.dumps(summary.to_list()).decode())


def _status(row: tuple) -> GroupStatus:
    summary = None
    if row[-1] is not None:
        try:
            summary = LagSummary.from_list(orjson.loads(row[-1]))
        except (orjson.JSONDecodeError, TypeError, ValueError, IndexError):
            summary = None  # unreadable: the reporter recomputes this one from the history
    return GroupStatus(*row[:-1], summary)


def _doomed(rows: list[tuple[int, float, float]], max_entries: int, keep: Keep) -> list[int]:
    """Indexes of the history rows (oldest first) that thinning deletes; never the newest."""
    kept = set(keep(rows, max_entries)) | {len(rows) - 1}
    return [i for i in range(len(rows)) if i not in kept]


_END_RUN = """UPDATE consumer_commits SET last_seen = ?
    WHERE first_seen = ? AND group_id = ? AND topic = ? AND partition = ?"""


class Store:
    def __init__(self, path: str, *, timeout: float = 5.0, create: bool = True):
        """Open (and migrate) the database. Nothing in a file that is not a lagmon database,
        or is from a newer lagmon, is changed. create=False refuses a file with no schema yet."""
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreError(f"database {path}: directory {parent} does not exist")
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)
        except sqlite3.Error as e:
            raise StoreError(f"database {path}: cannot open: {e}") from e
        try:
            # Read-only checks first: a foreign or newer file must be refused untouched
            # (journal_mode=WAL and auto_vacuum would rewrite its header).
            version = self._schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {path}: schema version {version} is newer than "
                    f"this lagmon supports ({SCHEMA_VERSION})"
                )
            if version == 0 and not create:
                raise StoreError(f"database {path}: holds no lagmon data yet (has the sampler run?)")
            self._configure()
            self._migrate()
            for stmt in TEMP_TABLES:
                self._conn.execute(stmt)
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        except BaseException as e:
            self._conn.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"database {path}: cannot use: {e}") from e
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- connection, transactions, migrations -----------------------------------------------

    def _configure(self) -> None:
        db = self._conn
        db.execute(f"PRAGMA busy_timeout = {int(OPEN_WAIT_SECONDS * 1000)}")  # until opened
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect before the first table
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"database {self.path}: journal_mode=WAL was refused (got {mode!r})")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        db.execute("PRAGMA temp_store = MEMORY")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short BEGIN IMMEDIATE transaction: committed on success, rolled back on any error."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One short deferred (read) transaction, for reads that must see one snapshot."""
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        finally:
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def _schema_version(self) -> int:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            if tables:
                raise StoreError(
                    f"database {self.path}: not a lagmon database "
                    f"(has tables {sorted(tables)[:5]} but no schema_version)"
                )
            return 0
        return self._conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    def _migrate(self) -> None:
        while True:
            with self._write() as db:
                version = self._schema_version()
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"database {self.path}: schema version {version} is newer than "
                        f"this lagmon supports ({SCHEMA_VERSION})"
                    )
                if version == SCHEMA_VERSION:
                    return
                for stmt in MIGRATIONS[version]:
                    db.execute(stmt)
                db.execute("INSERT INTO schema_version(version) VALUES (?)", (version + 1,))

    # --- writes -----------------------------------------------------------------------------

    def record_heads(self, heads: Mapping[tuple[str, int], int], at: float) -> list[tuple[str, int]]:
        """Record one sample of head offsets; returns the partitions whose head went DOWN (history reset)."""
        with self._write() as db:
            db.execute("DELETE FROM temp.in_heads")
            db.executemany(
                "INSERT INTO temp.in_heads(topic, partition, offset) VALUES (?, ?, ?)",
                [(t, p, o) for (t, p), o in heads.items()],
            )
            reset = [
                (t, p)
                for t, p in db.execute(
                    """SELECT topic, partition FROM temp.in_heads i WHERE i.offset <
                   (SELECT max(offset) FROM partition_offsets o
                    WHERE o.topic = i.topic AND o.partition = i.partition)"""
                )
            ]
            for table in ("partition_offsets", "partition_anchors"):
                db.executemany(f"DELETE FROM {table} WHERE topic = ? AND partition = ?", reset)
            db.execute(
                """INSERT INTO partition_offsets(topic, partition, offset, first_seen, last_seen)
                          SELECT topic, partition, offset, :at, :at FROM temp.in_heads WHERE true
                          ON CONFLICT(topic, partition, offset) DO UPDATE SET last_seen = max(last_seen, :at)""",
                {"at": at},
            )
            db.execute("DELETE FROM temp.in_heads")
        return reset

    def record_commits(
        self, commits: Mapping[tuple[str, str, int], int], at: float
    ) -> set[tuple[str, str, int]]:
        """Record one sample of committed offsets; returns the keys whose offset ADVANCED."""
        with self._write() as db:
            db.execute("DELETE FROM temp.in_commits")
            db.executemany(
                "INSERT INTO temp.in_commits(group_id, topic, partition, committed_offset)"
                " VALUES (?, ?, ?, ?)",
                [(g, t, p, o) for (g, t, p), o in commits.items()],
            )
            db.execute("""UPDATE temp.in_commits SET (prev_offset, prev_first_seen, prev_last_seen) = (
                              SELECT c.committed_offset, c.first_seen, c.last_seen FROM latest_commits c
                              WHERE c.group_id = in_commits.group_id AND c.topic = in_commits.topic
                                AND c.partition = in_commits.partition)""")
            # An unchanged offset only moves latest_commits.last_seen (a small table); the history
            # row of a run gets its final last_seen when the run ends, here, or when thinned.
            # One primary-key update per ended run that was seen more than once (a row is written
            # with last_seen = first_seen). A join here would let the planner scan the history.
            db.executemany(
                _END_RUN,
                db.execute(
                    """SELECT prev_last_seen, prev_first_seen, group_id, topic, partition FROM temp.in_commits
                   WHERE prev_offset IS NOT NULL AND committed_offset <> prev_offset
                     AND prev_last_seen <> prev_first_seen"""
                ).fetchall(),
            )
            db.execute(
                """INSERT INTO consumer_commits(group_id, topic, partition, first_seen,
                              committed_offset, last_seen)
                          SELECT group_id, topic, partition, :at, committed_offset, :at FROM temp.in_commits
                          WHERE prev_offset IS NULL OR committed_offset <> prev_offset
                          ON CONFLICT(first_seen, group_id, topic, partition)
                          DO UPDATE SET committed_offset = excluded.committed_offset, last_seen = excluded.last_seen""",
                {"at": at},
            )
            db.execute(
                """INSERT INTO latest_commits(group_id, topic, partition, committed_offset,
                              first_seen, last_seen)
                          SELECT group_id, topic, partition, committed_offset,
                                 CASE WHEN committed_offset = prev_offset THEN prev_first_seen ELSE :at END, :at
                          FROM temp.in_commits WHERE true
                          ON CONFLICT(group_id, topic, partition) DO UPDATE SET
                              committed_offset = excluded.committed_offset, first_seen = excluded.first_seen,
                              last_seen = CASE WHEN excluded.first_seen = latest_commits.first_seen
                                               THEN max(latest_commits.last_seen, excluded.last_seen)
                                               ELSE excluded.last_seen END""",
                {"at": at},
            )
            advanced = {
                (g, t, p)
                for g, t, p in db.execute(
                    "SELECT group_id, topic, partition FROM temp.in_commits WHERE committed_offset > prev_offset"
                )
            }
            db.execute("DELETE FROM temp.in_commits")
        return advanced

    def put_anchor(self, topic: str, partition: int, offset: int, timestamp: float, exact: bool) -> None:
        self.put_anchors([(topic, partition, offset, timestamp, exact)])

    def put_anchors(self, anchors: Iterable[tuple[str, int, int, float, bool]]) -> None:
        """Upsert (topic, partition, offset, timestamp, exact) anchors in one transaction."""
        rows = [(t, p, o, ts, int(bool(exact))) for t, p, o, ts, exact in anchors]
        if not rows:
            return
        with self._write() as db:
            db.executemany(
                """INSERT INTO partition_anchors(topic, partition, offset, timestamp, exact)
                              VALUES (?, ?, ?, ?, ?) ON CONFLICT(topic, partition, offset)
                              DO UPDATE SET timestamp = excluded.timestamp, exact = excluded.exact""",
                rows,
            )

    def save_group_status(self, rows: Iterable[GroupStatus]) -> None:
        with self._write() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO group_status({_columns(GroupStatus)}) "
                f"VALUES ({', '.join('?' * len(fields(GroupStatus)))})",
                [_status_row(r) for r in rows],
            )

    def add_transitions(self, rows: Iterable[Transition]) -> None:
        with self._write() as db:
            db.executemany(
                f"INSERT INTO group_transitions({_columns(Transition)}) VALUES (?, ?, ?, ?, ?, ?)",
                [_row(r) for r in rows],
            )

    def mark_excluded(self, topics: Mapping[str, str], groups: Mapping[str, str], at: float) -> None:
        """Upsert name -> pattern; first_seen is kept from the first time a name was marked."""
        with self._write() as db:
            for table, key, names in (
                ("excluded_topics", "topic", topics),
                ("excluded_groups", "group_id", groups),
            ):
                db.executemany(
                    f"INSERT INTO {table}({key}, pattern, first_seen) VALUES (?, ?, ?)"
                    f" ON CONFLICT({key}) DO UPDATE SET pattern = excluded.pattern",
                    [(name, pattern, at) for name, pattern in names.items()],
                )

    def delete_topic(self, topic: str) -> None:
        with self._write() as db:
            # through the (group_id, topic) index: the groups come from latest_commits, which
            # holds the newest row of every key in the history
            db.execute(
                """DELETE FROM consumer_commits WHERE topic = :t AND group_id IN (
                              SELECT group_id FROM latest_commits WHERE topic = :t)""",
                {"t": topic},
            )
            for table in (
                "partition_offsets",
                "partition_anchors",
                "latest_commits",
                "group_status",
                "group_transitions",
            ):
                db.execute(f"DELETE FROM {table} WHERE topic = ?", (topic,))

    def heartbeat(
        self,
        stage: str,
        *,
        pid: int,
        started_at: float,
        at: float,
        interval: float,
        success: bool,
        error: str | None = None,
    ) -> None:
        """success=True sets last_success=at; False sets last_error/last_error_at. Other fields are kept."""
        ok_at, err, err_at = (at, None, None) if success else (None, error or "error", at)
        with self._write() as db:
            db.execute(
                """INSERT INTO stage_state(stage, pid, started_at, heartbeat_at, last_success,
                              last_error, last_error_at, interval) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                          ON CONFLICT(stage) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at,
                              heartbeat_at = excluded.heartbeat_at, interval = excluded.interval,
                              last_success = coalesce(excluded.last_success, last_success),
                              last_error = coalesce(excluded.last_error, last_error),
                              last_error_at = coalesce(excluded.last_error_at, last_error_at)""",
                (stage, pid, started_at, at, ok_at, err, err_at, interval),
            )

    # --- reads ------------------------------------------------------------------------------

    def latest_heads(self) -> dict[tuple[str, int], HeadRow]:
        rows = self._conn.execute("""SELECT topic, partition, max(offset), first_seen, last_seen
                                     FROM partition_offsets GROUP BY topic, partition""")
        return {(t, p): HeadRow(o, f, s) for t, p, o, f, s in rows}

    def group_statuses(self) -> dict[tuple[str, str], GroupStatus]:
        rows = self._conn.execute(f"SELECT {_columns(GroupStatus)} FROM group_status")
        return {(r[0], r[1]): _status(r) for r in rows}

    def lag_inputs(self, groups_topics: Iterable[tuple[str, str]] | None = None) -> list[LagInput]:
        sql = LAG_INPUTS_ALL
        if groups_topics is not None:
            sql = LAG_INPUTS_WANTED
            self._conn.execute("DELETE FROM temp.want_pairs")
            self._conn.executemany(
                "INSERT OR IGNORE INTO temp.want_pairs(group_id, topic) VALUES (?, ?)", list(groups_topics)
            )
        with self._read() as db:
            rows = db.execute(sql).fetchall()
        return [
            LagInput(
                g,
                t,
                p,
                c,
                cf,
                cl,
                newest,
                None if hb is None else (hb, hbt),
                None if ha is None else (ha, hat),
                None if ab is None else (ab, abt),
                None if aa is None else (aa, aat),
                None if ho is None else (ho, hot),
                hbf,
            )
            for g, t, p, c, cf, cl, newest, hb, hbt, ha, hat, ab, abt, aa, aat, ho, hot, hbf in rows
        ]

    def commit_keys(self) -> set[tuple[str, str]]:
        """Every (group_id, topic) with a committed offset on record."""
        return set(self._conn.execute("SELECT DISTINCT group_id, topic FROM latest_commits"))

    def stage_states(self) -> dict[str, StageState]:
        rows = self._conn.execute(f"SELECT {_columns(StageState)} FROM stage_state")
        return {r[0]: StageState(*r) for r in rows}

    def excluded(self) -> tuple[dict[str, str], dict[str, str]]:
        with self._read() as db:
            topics = dict(db.execute("SELECT topic, pattern FROM excluded_topics"))
            groups = dict(db.execute("SELECT group_id, pattern FROM excluded_groups"))
        return topics, groups

    # --- housekeeping -----------------------------------------------------------------------

    def thin_heads(self, max_entries: int, keep: Keep) -> int:
        """Thin every partition with > max_entries head rows; one short write per partition; rows deleted."""
        return self._thin(max_entries, keep, ("topic", "partition"), "offset", "offset", "partition_offsets")

    def thin_commits(self, max_entries: int, keep: Keep) -> int:
        """Same for consumer_commits per (group, topic, partition); rows are (offset, first_seen, last_seen).
        The table is in time order: each (group, topic) is read through its index, one short
        write per (group, topic) that holds more than max_entries rows."""
        with self._write() as db:  # bring each open run's last_seen up to date first
            db.executemany(
                _END_RUN,
                db.execute(
                    "SELECT last_seen, first_seen, group_id, topic, partition"
                    " FROM latest_commits WHERE last_seen <> first_seen"
                ).fetchall(),
            )
        with self._read() as db:
            pairs = db.execute(
                "SELECT group_id, topic FROM consumer_commits GROUP BY group_id, topic HAVING count(*) > ?",
                (max_entries,),
            ).fetchall()
        deleted = 0
        for group, topic in pairs:
            with self._write() as db:
                runs: dict[int, list[tuple]] = {}
                for p, offset, first, last in db.execute(
                    "SELECT partition, committed_offset, first_seen, last_seen FROM consumer_commits"
                    " WHERE group_id = ? AND topic = ? ORDER BY partition, first_seen",
                    (group, topic),
                ):
                    runs.setdefault(p, []).append((offset, first, last))
                doomed = []
                for p, rows in runs.items():
                    if len(rows) > max_entries:
                        doomed += [(rows[i][1], group, topic, p) for i in _doomed(rows, max_entries, keep)]
                db.executemany(
                    "DELETE FROM consumer_commits WHERE first_seen = ? AND group_id = ? AND topic = ?"
                    " AND partition = ?",
                    doomed,
                )
                deleted += len(doomed)
        return deleted

    def _thin(
        self, max_entries: int, keep: Keep, key: tuple[str, ...], offset_col: str, pk_col: str, table: str
    ) -> int:
        key_cols = ", ".join(key)
        match = " AND ".join(f"{k} = ?" for k in key)
        with self._read() as db:
            crowded = db.execute(
                f"SELECT {key_cols} FROM {table} GROUP BY {key_cols} HAVING count(*) > ?", (max_entries,)
            ).fetchall()
        deleted = 0
        for k in crowded:
            with self._write() as db:
                rows = db.execute(
                    f"SELECT {offset_col}, first_seen, last_seen, {pk_col} FROM {table}"
                    f" WHERE {match} ORDER BY {pk_col}",
                    k,
                ).fetchall()
                if len(rows) <= max_entries:
                    continue
                doomed = [(*k, rows[i][3]) for i in _doomed([r[:3] for r in rows], max_entries, keep)]
                db.executemany(f"DELETE FROM {table} WHERE {match} AND {pk_col} = ?", doomed)
                deleted += len(doomed)
        return deleted

    def prune_anchors(self) -> int:
        """Drop anchors below every group's latest commit on their partition (all, if no commits)."""
        with self._write() as db:
            before = db.total_changes
            db.execute(_PRUNE_ANCHORS)  # .rowcount is -1 for a statement starting with WITH
            return db.total_changes - before

    def purge_absent_groups(self, older_than: float) -> int:
        """Delete status, commits and transitions of (group, topic)s last present before older_than."""
        with self._write() as db:
            gone = db.execute(
                "SELECT group_id, topic FROM group_status WHERE last_present < ?", (older_than,)
            ).fetchall()
            for table in ("consumer_commits", "latest_commits", "group_transitions", "group_status"):
                db.executemany(f"DELETE FROM {table} WHERE group_id = ? AND topic = ?", gone)
        return len(gone)

    def prune_transitions(self, older_than: float) -> int:
        """Forget state transitions recorded before older_than; returns rows deleted."""
        with self._write() as db:
            return db.execute("DELETE FROM group_transitions WHERE at < ?", (older_than,)).rowcount

    def transitions(self, group_id: str, topic: str) -> list[Transition]:
        """The recorded transitions of one group/topic, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_columns(Transition)} FROM group_transitions WHERE group_id = ? AND topic = ? ORDER BY at",
            (group_id, topic),
        ).fetchall()
        return [Transition(*r) for r in rows]

    def maintenance(self, *, vacuum_pages: int = 1000) -> dict:
        """Return up to vacuum_pages free pages to the OS, then a PASSIVE checkpoint; returns sizes."""
        # executescript steps the pragma to completion (execute() would free a single page); it runs
        # its own BEGIN IMMEDIATE because executescript() commits any open transaction first.
        try:
            self._conn.executescript(
                f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({int(vacuum_pages)}); COMMIT;"
            )
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        checkpoint = tuple(self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        freelist = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        wal = self.path + "-wal"
        return {
            "db_bytes": os.path.getsize(self.path),
            "wal_bytes": os.path.getsize(wal) if os.path.exists(wal) else 0,
            "freelist_pages": freelist,
            "checkpoint": checkpoint,
        }

    def integrity_check(self) -> str:
        return "\n".join(r[0] for r in self._conn.execute("PRAGMA integrity_check"))

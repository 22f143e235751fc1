"""The Store's queries of a sample: heads, commits and anchors recorded, lag inputs read.

A sampler calls ``enable_brackets()``: from then on its Store keeps ``cache.Brackets`` (the
rows the lag inputs are read from, mirrored in memory) and reads the lag inputs from it, and
record_commits takes each commit's previous value from it instead of joining latest_commits.
Every other process (the reporter, the housekeeper, lagmon status) reads the database only.
Whatever changes those rows other than these writes bumps ``history_epoch`` in the same
transaction (sql.BUMP_EPOCH); a Store that sees the epoch move reloads its mirror.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

from lagmon.store import sql
from lagmon.store.cache import Brackets
from lagmon.store.figures import FiguresStore
from lagmon.store.rows import LagInput, lag_input

CommitKey = tuple[str, str, int]
ROWS_PER_STATEMENT = 500  # rows of one multi-row INSERT (6 values each)
_MULTI: dict[tuple[str, int], str] = {}


def _run_key(row: tuple) -> tuple:
    """An END_RUN row's consumer_commits key: (first_seen, group_id, topic, partition)."""
    return row[1:]


def _insert(db: sqlite3.Connection, statement: str, rows: list[tuple]) -> None:
    """executemany(statement, rows), but ROWS_PER_STATEMENT rows per statement (sql.multi_row);
    the rest, fewer, one by one. Within one statement the rows go in in the order given."""
    width = len(rows[0]) if rows else 1
    n = min(ROWS_PER_STATEMENT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    whole = len(rows) - len(rows) % n if n > 1 else 0
    if whole:
        multi = _MULTI.get((statement, n))
        if multi is None:
            multi = _MULTI[(statement, n)] = sql.multi_row(statement, n)
        for i in range(0, whole, n):
            db.execute(multi, [v for row in rows[i : i + n] for v in row])
    db.executemany(statement, rows[whole:])


class SampleStore(FiguresStore):
    _brackets: Brackets | None = None

    # --- the mirror
    def enable_brackets(self) -> None:
        """Keep the lag inputs' rows in memory from now on (the sampler's Store)."""
        self._brackets = Brackets()

    def _fresh_brackets(self, db: sqlite3.Connection) -> Brackets | None:
        """The mirror, reloaded first if another writer moved the epoch (call inside a
        transaction, so that what is loaded is one snapshot)."""
        b = self._brackets
        if b is None:
            return None
        epoch = db.execute(sql.EPOCH).fetchone()[0]
        if b.epoch != epoch:
            b.load(
                epoch,
                db.execute(sql.NEWEST_HEADS).fetchall(),
                db.execute(sql.OLDEST_HEADS).fetchall(),
                db.execute(sql.ALL_ANCHORS).fetchall(),
                db.execute(sql.ALL_LATEST_COMMITS).fetchall(),
            )
        return b

    def _preload_brackets(self) -> None:
        """Reload the mirror, if the epoch moved, in a read transaction: not while holding the
        write lock the sample's next write takes (a write then reloads only if another writer
        committed in between)."""
        if self._brackets is not None:
            with self._read() as db:
                self._fresh_brackets(db)

    def _drop_brackets(self) -> None:
        if self._brackets is not None:
            self._brackets.epoch = None  # reloaded at the next use

    # --- writes
    def record_heads(self, heads: Mapping[tuple[str, int], int], at: float) -> list[tuple[str, int]]:
        """Record one sample of head offsets; returns the partitions whose head went DOWN (history reset)."""
        self._preload_brackets()
        with self._write() as db:
            brackets = self._fresh_brackets(db)
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
        if brackets is not None:
            self._mirror(brackets.record_heads, heads, at, reset)
        return reset

    def _mirror(self, update, *args) -> None:
        try:
            update(*args)
        except BaseException:
            self._drop_brackets()
            raise

    def record_commits(self, commits: Mapping[CommitKey, int], at: float) -> set[CommitKey]:
        """Record one sample of committed offsets; returns the keys whose offset ADVANCED.

        Per key: latest_commits gets the offset with first_seen kept while it is unchanged
        (last_seen = the newest sample that saw it); consumer_commits, the history, gets a row
        per run of one offset (first_seen = when the run began), its last_seen brought up to
        date when the run ends (here) or when it is thinned."""
        if self._brackets is None:
            return self._record_commits_sql(commits, at)
        at = float(at)
        self._preload_brackets()
        with self._write() as db:
            brackets = self._fresh_brackets(db)
            assert brackets is not None
            cached = brackets.commits
            ended, runs, latest = [], [], []
            advanced: set[CommitKey] = set()
            for key, o in commits.items():
                g, t, p = key
                parts = cached.get((g, t))
                prev = None if parts is None else parts.get(p)
                if prev is None:  # a new key
                    runs.append((g, t, p, at, o, at))
                    latest.append((g, t, p, o, at, at))
                    continue
                _g, _t, _p, prev_offset, first, last = prev
                if prev_offset == o:  # the same run: only its last_seen moves
                    if last < at:  # (else the row stays as it is)
                        latest.append((g, t, p, o, first, at))
                    continue
                if last != first:
                    ended.append((last, first, g, t, p))
                if o > prev_offset:
                    advanced.add(key)
                runs.append((g, t, p, at, o, at))
                latest.append((g, t, p, o, at, (last if last >= at else at) if first == at else at))
            # Each list in its table's primary-key order (the rows of one call have distinct keys,
            # so the order changes no result): the rows then go to the pages one after another.
            ended.sort(key=_run_key)
            db.executemany(sql.END_RUN, ended)
            runs.sort()  # consumer_commits: (first_seen = at, group_id, topic, partition)
            _insert(db, sql.NEW_RUN, runs)
            _insert(db, sql.PUT_LATEST_COMMIT, sorted(latest))
        self._mirror(brackets.set_commits, latest)  # in the order of `commits`, as before
        return advanced

    def _record_commits_sql(self, commits: Mapping[CommitKey, int], at: float) -> set[CommitKey]:
        """record_commits without the mirror: the previous values joined in from latest_commits."""
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
                sql.END_RUN,
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
            brackets = self._fresh_brackets(db)
            db.executemany(
                """INSERT INTO partition_anchors(topic, partition, offset, timestamp, exact)
                              VALUES (?, ?, ?, ?, ?) ON CONFLICT(topic, partition, offset)
                              DO UPDATE SET timestamp = excluded.timestamp, exact = excluded.exact""",
                rows,
            )
        if brackets is not None:
            self._mirror(brackets.put_anchors, rows)

    # --- reads
    def lag_inputs(self, groups_topics: Iterable[tuple[str, str]] | None = None) -> list[LagInput]:
        """One LagInput per latest commit (of `groups_topics` only, when given)."""
        if groups_topics is not None and self._brackets is not None:
            with self._read() as db:
                brackets = self._fresh_brackets(db)
                assert brackets is not None
                inputs, missed = brackets.inputs(groups_topics)
            return inputs + (self._lag_inputs_sql(missed) if missed else [])
        return self._lag_inputs_sql(groups_topics)

    def _lag_inputs_sql(self, groups_topics: Iterable[tuple[str, str]] | None) -> list[LagInput]:
        query = sql.LAG_INPUTS_ALL
        if groups_topics is not None:
            query = sql.LAG_INPUTS_WANTED
            self._conn.execute("DELETE FROM temp.want_pairs")
            self._conn.executemany(
                "INSERT OR IGNORE INTO temp.want_pairs(group_id, topic) VALUES (?, ?)", list(groups_topics)
            )
        with self._read() as db:
            rows = db.execute(query).fetchall()
        return [lag_input(r) for r in rows]

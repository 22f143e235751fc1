"""The Store: one WAL-mode SQLite file shared by the sampler, reporter and housekeeper
processes, one method per query. The only module with SQL, with schema.py and sql.py.

Every write is ONE short ``BEGIN IMMEDIATE ... COMMIT`` (``Store._write``); reads that need a
consistent view run in one short deferred transaction (``Store._read``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from lagmon.store import sql
from lagmon.store.rows import (
    GroupStatus,
    HeadRow,
    StageState,
    Transition,
    columns,
    group_status,
    placeholders,
    status_row,
    values,
)
from lagmon.store.samples import SampleStore

Keep = Callable[[list[tuple[int, float, float]], int], set[int]]


def _doomed(rows: list[tuple[int, float, float]], max_entries: int, keep: Keep) -> list[int]:
    """Indexes of the history rows (oldest first) that thinning deletes; never the newest."""
    kept = set(keep(rows, max_entries)) | {len(rows) - 1}
    return [i for i in range(len(rows)) if i not in kept]


class Store(SampleStore):
    """All queries of the three stages: one method each."""

    # --- writes -----------------------------------------------------------------------------

    def save_group_status(self, rows: Iterable[GroupStatus]) -> None:
        with self._write() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO group_status({columns(GroupStatus)}) "
                f"VALUES ({placeholders(GroupStatus)})",
                [status_row(r) for r in rows],
            )

    def add_transitions(self, rows: Iterable[Transition]) -> None:
        with self._write() as db:
            db.executemany(
                f"INSERT INTO group_transitions({columns(Transition)}) VALUES ({placeholders(Transition)})",
                [values(r) for r in rows],
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
                "group_figures",
            ):
                db.execute(f"DELETE FROM {table} WHERE topic = ?", (topic,))
            db.execute(sql.BUMP_EPOCH)

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
        rows = self._conn.execute(sql.NEWEST_HEADS)
        return {(t, p): HeadRow(o, f, s) for t, p, o, f, s in rows}

    def group_statuses(self) -> dict[tuple[str, str], GroupStatus]:
        rows = self._conn.execute(f"SELECT {columns(GroupStatus)} FROM group_status")
        return {(r[0], r[1]): group_status(r) for r in rows}

    def commit_keys(self) -> set[tuple[str, str]]:
        """Every (group_id, topic) with a committed offset on record."""
        return set(self._conn.execute("SELECT DISTINCT group_id, topic FROM latest_commits"))

    def listing_state(self) -> dict[str, dict[tuple[str, str], int]]:
        """kind -> {(name, topic): count} of the sampler's listing memory (see schema)."""
        out: dict[str, dict[tuple[str, str], int]] = {}
        for kind, name, topic, count in self._conn.execute(
            "SELECT kind, name, topic, count FROM listing_state"
        ):
            out.setdefault(kind, {})[(name, topic)] = count
        return out

    def save_listing_state(self, state: Mapping[str, Mapping[tuple[str, str], int]]) -> None:
        """Replace the listing memory with ``state`` (kind -> {(name, topic): count})."""
        rows = [(kind, n, t, c) for kind, entries in state.items() for (n, t), c in entries.items()]
        with self._write() as db:
            db.execute("DELETE FROM listing_state")
            db.executemany("INSERT INTO listing_state(kind, name, topic, count) VALUES (?, ?, ?, ?)", rows)

    def latest_commit_offsets(self) -> dict[tuple[str, str, int], int]:
        """(group_id, topic, partition) -> the latest committed offset on record."""
        rows = self._conn.execute("SELECT group_id, topic, partition, committed_offset FROM latest_commits")
        return {(g, t, p): o for g, t, p, o in rows}

    def stage_states(self) -> dict[str, StageState]:
        rows = self._conn.execute(f"SELECT {columns(StageState)} FROM stage_state")
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
                sql.END_RUN,
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
                if doomed:
                    db.execute(sql.BUMP_EPOCH)
                deleted += len(doomed)
        return deleted

    def prune_anchors(self) -> int:
        """Drop anchors below every group's latest commit on their partition (all, if no commits)."""
        with self._write() as db:
            before = db.total_changes
            db.execute(sql.PRUNE_ANCHORS)  # .rowcount is -1 for a statement starting with WITH
            deleted = db.total_changes - before
            if deleted:
                db.execute(sql.BUMP_EPOCH)
            return deleted

    def purge_absent_groups(self, older_than: float) -> int:
        """Delete status, commits and transitions of (group, topic)s last present before older_than."""
        with self._write() as db:
            gone = db.execute(
                "SELECT group_id, topic FROM group_status WHERE last_present < ?", (older_than,)
            ).fetchall()
            for table in (
                "consumer_commits",
                "latest_commits",
                "group_transitions",
                "group_status",
                "group_figures",
            ):
                db.executemany(f"DELETE FROM {table} WHERE group_id = ? AND topic = ?", gone)
            if gone:
                db.execute(sql.BUMP_EPOCH)
        return len(gone)

    def prune_transitions(self, older_than: float) -> int:
        """Forget state transitions recorded before older_than; returns rows deleted."""
        with self._write() as db:
            return db.execute("DELETE FROM group_transitions WHERE at < ?", (older_than,)).rowcount

    def transitions(self, group_id: str, topic: str) -> list[Transition]:
        """The recorded transitions of one group/topic, oldest first."""
        rows = self._conn.execute(
            f"SELECT {columns(Transition)} FROM group_transitions WHERE group_id = ? AND topic = ? ORDER BY at",
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

    def stage_started(self, stage: str, *, pid: int, started_at: float, interval: float) -> None:
        """A stage process started: its pid, started_at and heartbeat; success and error kept.
        A start soon (3 intervals + 60 s) after a run that never completed a step keeps that
        run's started_at, so a stage crashing in every first step does not look as if it had
        only just started (monitor.starting would hide that it is down)."""
        with self._write() as db:
            db.execute(
                """INSERT INTO stage_state(stage, pid, started_at, heartbeat_at, interval) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(stage) DO UPDATE SET pid = excluded.pid, heartbeat_at = excluded.heartbeat_at,
                       interval = excluded.interval,
                       started_at = CASE WHEN coalesce(last_success, 0) < started_at
                                         AND coalesce(last_error_at, 0) < started_at
                                         AND excluded.started_at - heartbeat_at <= 3 * interval + 60
                                    THEN started_at ELSE excluded.started_at END""",
                (stage, pid, started_at, started_at, interval),
            )

    def drop_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Forget (group_id, topic) pairs that are no longer monitored: their status and commit
        history. Their transitions are kept (until prune_transitions)."""
        keys = list(pairs)
        with self._write() as db:
            for table in ("consumer_commits", "latest_commits", "group_status", "group_figures"):
                db.executemany(f"DELETE FROM {table} WHERE group_id = ? AND topic = ?", keys)
            if keys:
                db.execute(sql.BUMP_EPOCH)

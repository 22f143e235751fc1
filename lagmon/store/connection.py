"""The database connection under every Store: opening, PRAGMAs, migrations, transactions."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from lagmon.store.rows import StoreError
from lagmon.store.schema import MIGRATIONS, SCHEMA_VERSION, TEMP_TABLES

JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# How long opening waits for another process's write, migrations included: rebuilding a big
# history in a new layout takes seconds to a minute, and a stage started meanwhile must wait
# for it rather than fail (supervisord would give up on it after a few quick exits).
OPEN_WAIT_SECONDS = 300.0


class Database:
    """One connection to the lagmon database, migrated to SCHEMA_VERSION when opened."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

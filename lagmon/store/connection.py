"""The database connection under every Store: opening, PRAGMAs, migrations, transactions.

A file is decided to be lagmon's before anything writes to it: it is first opened read-only
(``mode=ro``) and must carry lagmon's ``PRAGMA application_id`` (schema.APPLICATION_ID), or be
a lagmon database from before that id (application_id 0 and exactly lagmon's tables for its
schema version), or be empty. Only then is it opened for writing, switched to WAL and migrated;
the id is set at that first write. ``readonly=True`` (``lagmon status``) never opens it for
writing at all, so it works on a full disk and in a directory it cannot write.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from lagmon.store.rows import StoreError
from lagmon.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, TEMP_TABLES, tables_at

JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# How long opening waits for another process's write, migrations included: rebuilding a big
# history in a new layout takes seconds to a minute, and a stage started meanwhile must wait
# for it rather than fail (supervisord would give up on it after a few quick exits).
OPEN_WAIT_SECONDS = 300.0

# What SQLite says when the -wal/-shm beside a WAL database cannot be created or written.
_SIDE_FILE_ERRORS = frozenset(
    {
        "SQLITE_READONLY_DIRECTORY",
        "SQLITE_READONLY_CANTINIT",
        "SQLITE_READONLY_CANTLOCK",
        "SQLITE_READONLY_RECOVERY",
        "SQLITE_CANTOPEN",
        "SQLITE_IOERR_SHMOPEN",
        "SQLITE_IOERR_SHMSIZE",
        "SQLITE_IOERR_SHMMAP",
    }
)


def _uri(path: str, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?{query}"


def _disk_full(directory: str) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False


def _errorname(exc: BaseException) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


class Database:
    """One connection to the lagmon database, migrated to SCHEMA_VERSION when opened."""

    def __init__(self, path: str, *, timeout: float = 5.0, create: bool = True, readonly: bool = False):
        """Open (and migrate) the database. Nothing in a file that is not a lagmon database,
        or is from a newer lagmon, is changed. create=False refuses a file with no schema yet.
        readonly=True opens an existing database for reading only (never migrated; see
        _open_readonly); ``immutable`` then says whether it had to be read without its -shm."""
        self.path = path
        self.readonly = readonly
        self.immutable = False
        self.directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(self.directory):
            raise StoreError(f"database {path}: directory {self.directory} does not exist")
        if os.path.isdir(path):
            raise StoreError(f"database {path}: is a directory")
        if readonly or os.path.exists(path):
            probe = self._open_readonly(timeout)
            try:
                version = self._owned_version(probe)
                if version == 0 and not create:
                    raise StoreError(f"database {path}: holds no lagmon data yet (has the sampler run?)")
                if readonly and version < SCHEMA_VERSION:
                    raise StoreError(
                        f"database {path}: schema version {version} is older than this lagmon's "
                        f"({SCHEMA_VERSION}) and a read-only open does not migrate it: start the "
                        "stages (lagmon run) once"
                    )
            except BaseException as e:
                probe.close()
                if isinstance(e, sqlite3.Error):
                    raise StoreError(self._explain(e, "cannot read")) from e
                raise
            if readonly:
                self._conn = probe
                self._finish(probe, timeout, readonly=True)
                return
            probe.close()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)
        except sqlite3.Error as e:
            raise StoreError(self._explain(e, "cannot open")) from e
        try:
            # The read-only checks again on this connection (the file may have been created
            # meanwhile): a foreign or newer file must be refused untouched (journal_mode=WAL
            # and auto_vacuum would rewrite its header).
            version = self._owned_version(self._conn)
            if version == 0 and not create:
                raise StoreError(f"database {path}: holds no lagmon data yet (has the sampler run?)")
            self._configure()
            self._migrate()
            self._finish(self._conn, timeout, readonly=False)
        except BaseException as e:
            self._conn.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(self._explain(e, "cannot use")) from e
            raise

    @staticmethod
    def _finish(conn: sqlite3.Connection, timeout: float, *, readonly: bool) -> None:
        if readonly:  # the scratch tables must not touch the disk (it may be full)
            conn.execute("PRAGMA temp_store = MEMORY")
        for stmt in TEMP_TABLES:
            conn.execute(stmt)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")

    def _open_readonly(self, timeout: float) -> sqlite3.Connection:
        """A ``mode=ro`` connection (the file is opened O_RDONLY: nothing can write to it).
        Reading a WAL database needs its -shm; when that cannot be created or initialised (a
        directory this user cannot write, a full disk) and there is no -wal content the file
        lacks, the file alone is read with ``immutable=1``. With -wal content it is refused:
        reading the file alone would show data older than what is committed."""
        conn = None
        try:
            conn = sqlite3.connect(
                _uri(self.path, mode="ro"), uri=True, isolation_level=None, timeout=timeout
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read sets up -shm
            return conn
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            if _errorname(e) not in _SIDE_FILE_ERRORS:
                raise StoreError(self._explain(e, "cannot read")) from e
            wal = self._wal_bytes()
            if wal:
                raise StoreError(
                    f"database {self.path}: cannot read it: {self.path}-wal holds {wal} bytes not yet "
                    f"in the database file, and reading them needs {self.path}-shm, which cannot be "
                    f"created or written in {self.directory} ({e}); make the directory writable by "
                    f"this user (uid {os.getuid()}) or run as the user the stages run as"
                ) from e
        try:
            conn = sqlite3.connect(
                _uri(self.path, mode="ro", immutable=1), uri=True, isolation_level=None, timeout=timeout
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise StoreError(self._explain(e, "cannot read")) from e
        self.immutable = True
        return conn

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def _explain(self, exc: sqlite3.Error, what: str) -> str:
        """The StoreError text for an SQLite error: a -wal/-shm that cannot be created or
        written, and a full disk, are said as such, not only as SQLite words them."""
        name, path, directory = _errorname(exc), self.path, self.directory
        side = [f for f in (path + "-wal", path + "-shm") if os.path.exists(f) and not os.access(f, os.W_OK)]
        if name in _SIDE_FILE_ERRORS or name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
            if not os.access(directory, os.W_OK):
                return (
                    f"database {path}: {what}: the {path}-wal and {path}-shm files could not be created "
                    f"in {directory}: the directory is not writable by this user (uid {os.getuid()}); "
                    f"lagmon keeps the database in WAL mode, and SQLite needs both files beside it ({exc})"
                )
            if side:
                return (
                    f"database {path}: {what}: {' and '.join(side)} cannot be written by this user "
                    f"(uid {os.getuid()}); SQLite's WAL mode needs them writable ({exc})"
                )
        if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _disk_full(directory)):
            return f"database {path}: {what}: the disk holding {directory} is full ({exc})"
        return f"database {path}: {what}: {exc}"

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
        except BaseException as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error) and _errorname(e) == "SQLITE_FULL":
                self._make_room()
            raise

    def _make_room(self) -> None:
        """After a write failed on a full disk: a RESTART checkpoint, so the next write starts
        the -wal over, on the blocks the file already has, instead of growing it. Small writes
        (a heartbeat with the error that says why nothing else is written) then go through
        while the disk stays full. Best effort: it fails when the checkpoint itself needs more
        room (the database file must grow)."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error:
            pass

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One short deferred (read) transaction, for reads that must see one snapshot."""
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        finally:
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def _owned_version(self, conn: sqlite3.Connection) -> int:
        """The schema version of a lagmon database (0: empty, lagmon may create its schema),
        read without writing, in one read transaction: another stage may be creating the schema
        at this moment, and an application_id read before its commit with the tables read after
        it would look like a foreign file. StoreError for a file that is not lagmon's or is newer."""
        if conn.in_transaction:
            return self._read_owned_version(conn)
        conn.execute("BEGIN")
        try:
            return self._read_owned_version(conn)
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # a read: nothing to keep

    def _read_owned_version(self, conn: sqlite3.Connection) -> int:
        path = self.path
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        }
        if app_id not in (0, APPLICATION_ID):
            raise StoreError(
                f"database {path}: not a lagmon database (its application_id is {app_id:#010x}, "
                f"lagmon's is {APPLICATION_ID:#010x}); left untouched"
            )
        if not tables:
            return 0
        if "schema_version" not in tables:
            raise StoreError(
                f"database {path}: not a lagmon database "
                f"(has tables {sorted(tables)[:5]} but no schema_version); left untouched"
            )
        try:
            version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        except sqlite3.Error as e:
            raise StoreError(
                f"database {path}: not a lagmon database (its schema_version table is not lagmon's: {e}); "
                "left untouched"
            ) from e
        if app_id == APPLICATION_ID and isinstance(version, int):
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {path}: schema version {version} is newer than "
                    f"this lagmon supports ({SCHEMA_VERSION})"
                )
            return version
        # application_id 0: a lagmon database from before the id has exactly lagmon's tables
        if isinstance(version, int) and 1 <= version <= SCHEMA_VERSION and tables == tables_at(version):
            return version
        raise StoreError(
            f"database {path}: not a lagmon database (application_id 0, and its tables "
            f"{sorted(tables)[:8]} with schema_version {version!r} are not lagmon's); left untouched"
        )

    def _migrate(self) -> None:
        while True:
            with self._write() as db:
                version = self._owned_version(db)
                if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                if version == SCHEMA_VERSION:
                    return
                for stmt in MIGRATIONS[version]:
                    db.execute(stmt)
                db.execute("INSERT INTO schema_version(version) VALUES (?)", (version + 1,))

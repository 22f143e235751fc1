"""A database file that is not lagmon's is never written, by any command or stage (issue 11,
item 12), and a directory the stages cannot write is said to be one.

lagmon decides a file is its own before anything writes to it: opened read-only, it must carry
lagmon's PRAGMA application_id (store.schema.APPLICATION_ID), or be a lagmon database from
before that id (application_id 0 and exactly lagmon's tables), or be empty. The checks here
are real processes (`lagmon status`, `python -m processes.<stage> --once`) and compare the
file's sha256 before and after.

The read-only directory tests run the commands as the user nobody (`setpriv`): root may write
to a mode 555 directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from lagmon.store import MIGRATIONS, SCHEMA_VERSION, Store
from lagmon.store.schema import APPLICATION_ID
from testing.stages import config_dict
from tests.helpers import raw, write_config

REPO = Path(__file__).resolve().parent.parent
STAGES = ("sampler", "reporter", "housekeeper")
MONITORING = {"sample_interval_seconds": 60, "offline_sample_interval_seconds": 600}
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(argv: list[str], user: list[str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(user or []), sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def status(cfg: Path, user: list[str] | None = None) -> subprocess.CompletedProcess:
    return run(["-m", "lagmon", "status", "--config", str(cfg)], user)


def stage_once(stage: str, cfg: Path, user: list[str] | None = None) -> subprocess.CompletedProcess:
    return run(["-m", f"processes.{stage}", "--config", str(cfg), "--once"], user)


def lagmon_tables(conn: sqlite3.Connection, version: int = SCHEMA_VERSION) -> None:
    """lagmon's schema at `version` written by hand (no application_id, rollback journal)."""
    for v, stmts in enumerate(MIGRATIONS[:version]):
        for stmt in stmts:
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version(version) VALUES (?)", (v + 1,))


def foreign_own_schema_version(conn):
    """The reported case: another application keeps its own schema_version table."""
    conn.execute("CREATE TABLE schema_version(version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices(amount) VALUES (12.5)")


def foreign_lagmon_names_other_id(conn):
    """lagmon's very tables, but another application's id in the header."""
    lagmon_tables(conn)
    conn.execute("PRAGMA application_id = 0x12345678")


def foreign_lagmon_tables_plus_one(conn):
    """No id, lagmon's tables and one more: not lagmon's exact set."""
    lagmon_tables(conn)
    conn.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY)")


def foreign_schema_version_only(conn):
    """No id, a schema_version table alone with lagmon's current version."""
    conn.execute("CREATE TABLE schema_version(version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))


def foreign_wal_mode(conn):
    """Another application's database already in WAL mode, with its own schema_version."""
    conn.execute("PRAGMA journal_mode = WAL")
    foreign_own_schema_version(conn)


def make_db(path: Path, build) -> None:
    conn = sqlite3.connect(path)
    build(conn)
    conn.commit()
    conn.close()
    assert not Path(f"{path}-wal").exists()


@pytest.mark.parametrize(
    "build",
    [
        foreign_own_schema_version,
        foreign_lagmon_names_other_id,
        foreign_lagmon_tables_plus_one,
        foreign_schema_version_only,
        foreign_wal_mode,
    ],
    ids=[
        "own-schema_version",
        "lagmon-names-other-id",
        "lagmon-tables-plus-one",
        "schema_version-only",
        "wal-mode",
    ],
)
def test_foreign_database_is_refused_by_status_and_every_stage_and_left_byte_for_byte(tmp_path, build):
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    db = tmp_path / "state.db"
    make_db(db, build)
    before = sha256(db)
    header = db.read_bytes()[:100]
    # a rollback-journal file (1, 1), or WAL (2, 2): lagmon switched the first kind to WAL
    assert header[18:20] == (b"\x02\x02" if build is foreign_wal_mode else b"\x01\x01")

    out = status(cfg)
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"database error: database {db}: not a lagmon database" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert sha256(db) == before, "lagmon status modified another application's database"

    for stage in STAGES:
        out = stage_once(stage, cfg)
        assert out.returncode == 3, f"{stage}: {out.stdout}{out.stderr}"
        assert f"database {db}: not a lagmon database" in out.stderr, f"{stage}: {out.stderr}"
        assert sha256(db) == before, f"the {stage} (--once) modified another application's database"
    assert db.read_bytes()[:100] == header  # journal mode, change counter, application_id


def first_migrations(path: str, upto: int) -> None:
    """What another stage's first migration transactions leave (WAL, as a stage sets it)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for version in range(upto):
            for stmt in MIGRATIONS[version]:
                conn.execute(stmt)
            conn.execute("INSERT INTO schema_version(version) VALUES (?)", (version + 1,))
        conn.execute("COMMIT")
    finally:
        conn.close()


class Interleaved:
    """A connection after whose first statements another stage commits its next migrations."""

    def __init__(self, conn: sqlite3.Connection, between: list):
        self.conn, self.between = conn, between

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def execute(self, sql, *args):
        rows = Rows(self.conn.execute(sql, *args).fetchall())  # the statement done, its locks let go
        if self.between:
            self.between.pop(0)()
        return rows


class Rows(list):
    def fetchone(self):
        return self[0] if self else None


def test_a_schema_created_by_another_stage_during_the_check_is_not_taken_for_a_foreign_file(tmp_path):
    """Two stages starting at once on a fresh file: the check must read one snapshot. Before,
    it read application_id 0 before the other stage's first commit, the tables of version 3 and
    then schema_version 7: 'not a lagmon database' (the sampler exited 3 in a benchmark)."""
    path = str(tmp_path / "state.db")
    sqlite3.connect(path).close()  # the fresh, empty file both stages see
    store = Store.__new__(Store)
    store.path = path
    conn = sqlite3.connect(path, isolation_level=None)
    between = [lambda: first_migrations(path, 3), lambda: Store(path, timeout=5).close()]
    try:
        assert store._owned_version(Interleaved(conn, between)) in range(SCHEMA_VERSION + 1)  # type: ignore[arg-type]
    finally:
        conn.close()
    assert not between, "the other stage's commits did not come between the check's reads"
    Store(path).close()


def test_a_new_database_carries_lagmons_application_id(tmp_path):
    path = tmp_path / "state.db"
    Store(str(path)).close()
    assert raw(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert path.read_bytes()[68:72] == b"LAGM"


@pytest.mark.parametrize("version", [2, SCHEMA_VERSION])
def test_a_lagmon_database_from_before_the_id_is_recognised_and_gets_it_at_the_first_write(tmp_path, version):
    """application_id 0 and exactly lagmon's tables: lagmon's. Status (read-only) leaves the file
    as it is; the first stage to open it for writing sets the id (and migrates)."""
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    db = tmp_path / "state.db"
    make_db(db, lambda conn: lagmon_tables(conn, version))
    before = sha256(db)
    out = status(cfg)
    if version == SCHEMA_VERSION:
        assert out.returncode == 1, out.stdout + out.stderr  # readable; no sampler heartbeat yet
        assert "no consumer groups sampled yet" in out.stdout
    else:  # status reads only: it does not migrate, and says so
        assert out.returncode == 3, out.stdout + out.stderr
        assert f"schema version {version} is older" in out.stderr and "lagmon run" in out.stderr
    assert sha256(db) == before

    out = stage_once("housekeeper", cfg)
    assert out.returncode == 0, out.stdout + out.stderr
    assert raw(db, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert raw(db, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert status(cfg).returncode == 1


# --------------------------------------------------------------------------- read-only directory


def _as_nobody_works() -> None:
    out = subprocess.run([*NOBODY, "id", "-u"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.strip() != "0", f"cannot run as nobody: {out.stderr}"


@pytest.fixture
def readonly_dir():
    """(config, db): a fresh lagmon database (heartbeats of all three stages) in a mode 555
    directory owned by root, the database file itself owned by nobody; the config and lag.json
    beside that directory (both reachable by nobody)."""
    _as_nobody_works()
    base = Path(tempfile.mkdtemp(prefix="lagmon-rodir-", dir="/tmp"))
    try:
        os.chmod(base, 0o777)
        d = base / "db dir"  # a space, for the message
        d.mkdir()
        db = d / "state.db"
        now = time.time()
        with Store(str(db)) as store:
            for stage in STAGES:
                store.heartbeat(stage, pid=1, started_at=now - 60, at=now, interval=60, success=True)
        assert sorted(os.listdir(d)) == ["state.db"]  # -wal and -shm removed at close
        os.chown(db, 65534, 65534)
        os.chmod(d, 0o555)
        cfg_dict = config_dict(base, fast=False, monitoring=MONITORING)
        cfg_dict["database"]["path"] = str(db)
        cfg = base / "config.yaml"
        cfg.write_text(yaml.safe_dump(cfg_dict))
        yield cfg, db
    finally:
        for p in [base, *base.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)
        shutil.rmtree(base)


def test_stage_in_a_read_only_directory_says_the_wal_and_shm_cannot_be_created(readonly_dir):
    cfg, db = readonly_dir
    before = sha256(db)
    for stage in STAGES:
        out = stage_once(stage, cfg, NOBODY)
        assert out.returncode == 3, f"{stage}: {out.stdout}{out.stderr}"
        err = out.stderr
        assert f"the {db}-wal and {db}-shm files could not be created in {db.parent}" in err, err
        assert "the directory is not writable by this user (uid 65534)" in err, err
        assert "Traceback" not in err
    assert sha256(db) == before
    assert sorted(os.listdir(db.parent)) == ["state.db"]


def test_status_reads_a_database_in_a_read_only_directory(readonly_dir):
    """No -wal (the stages closed it cleanly) and no -shm can be made: status reads the file."""
    cfg, db = readonly_dir
    out = status(cfg, NOBODY)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no consumer groups sampled yet" in out.stdout
    assert sorted(os.listdir(db.parent)) == ["state.db"]


def test_status_refuses_wal_content_it_cannot_read_in_a_read_only_directory(readonly_dir):
    """A -wal with committed transactions but no -shm (a crash, then the directory made
    read-only): reading the file alone would show old data, so status says why it cannot."""
    cfg, db = readonly_dir
    os.chmod(db.parent, 0o755)
    # a writer that dies without checkpointing leaves its transactions in the -wal
    script = (
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
        "c.execute('PRAGMA wal_autocheckpoint = 0');"
        "c.execute(\"UPDATE stage_state SET last_error = 'x'\"); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script, str(db)], check=True, timeout=30)
    os.unlink(f"{db}-shm")
    assert os.path.getsize(f"{db}-wal") > 0
    os.chmod(db.parent, 0o555)
    out = status(cfg, NOBODY)
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"{db}-wal holds" in out.stderr and f"{db}-shm, which cannot be created" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr

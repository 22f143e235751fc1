"""A full disk, for real (issue 11, item 11): a 8 MiB tmpfs holds the database and lag.json,
and a filler file takes its last byte.

What must hold: the reporter logs that lag.json cannot be written once per episode (not at
every attempt) and records it as its last_error; `lagmon status` still reads the database
(read-only) and shows that error; when the space comes back the same reporter process
writes lag.json again, with no restart, and says it recovered.

The filesystem is a tmpfs mounted by the test (we run as root); when mounting is refused, a
loop-mounted ext4 image; when neither works the test fails and says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lagmon import report
from lagmon.store import Store
from testing.stages import StageProcess
from tests.helpers import raw, write_config

REPO = Path(__file__).resolve().parent.parent
SIZE_MB = 8


def _mount(directory: Path) -> str:
    """Mount a SIZE_MB filesystem on directory; returns what to unmount (or fails the test)."""
    errors = []
    tmpfs = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if tmpfs.returncode == 0:
        return str(directory)
    errors.append(f"mount -t tmpfs: {tmpfs.stderr.strip()}")
    image = directory.parent / "disk.img"
    for argv in (
        ["truncate", "-s", f"{SIZE_MB}M", str(image)],
        ["mkfs.ext4", "-q", "-F", str(image)],
        ["mount", "-o", "loop", str(image), str(directory)],
    ):
        out = subprocess.run(argv, capture_output=True, text=True)
        if out.returncode != 0:
            errors.append(f"{' '.join(argv[:2])}: {out.stderr.strip()}")
            pytest.fail("cannot mount a small filesystem for the disk-full test: " + "; ".join(errors))
    return str(directory)


@pytest.fixture
def small_disk():
    base = Path(tempfile.mkdtemp(prefix="lagmon-disk-", dir="/tmp"))
    mnt = base / "mnt"
    mnt.mkdir()
    target = _mount(mnt)
    cleanups: list[Callable[[], None]] = []
    try:
        yield mnt, cleanups
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        if subprocess.run(["umount", target], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def fill(directory: Path) -> Path:
    """Take every free block of the filesystem; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 512, 1):
            for _ in range(1 << 20):
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == 28, exc
                    break
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler


def wait_for(what: str, condition: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def generated_at(path: Path) -> str | None:
    try:
        return json.loads(path.read_bytes())["generated_at"]
    except (OSError, ValueError):
        return None


def reporter_state(db: Path) -> tuple | None:
    rows = raw(
        db, "SELECT pid, last_success, last_error, last_error_at FROM stage_state WHERE stage = 'reporter'"
    )
    return rows[0] if rows else None


def status(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lagmon", "status", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def seed(db: Path) -> None:
    now = time.time()
    with Store(str(db)) as store:
        store.heartbeat("sampler", pid=1, started_at=now, at=now, interval=1, success=True)


def test_reporter_on_a_full_disk_reports_once_shows_in_status_and_resumes_without_restart(small_disk):
    mnt, cleanups = small_disk
    cfg = write_config(mnt)  # report_interval_seconds 1
    db, lag_json = mnt / "state.db", mnt / "lag.json"
    seed(db)
    reporter = StageProcess("reporter", cfg)
    cleanups.append(reporter.stop)
    first = wait_for("a first lag.json", lambda: generated_at(lag_json))
    wait_for("lag.json rewritten", lambda: generated_at(lag_json) not in (None, first))

    filler = fill(mnt)
    error = f"ReportWriteError: cannot write {lag_json}: No space left on device (ENOSPC)"

    def failing():
        st = reporter_state(db)
        return st if st and st[2] == error and st[3] > (st[1] or 0) else None

    pid, _, _, first_error_at = wait_for("the reporter's write error in stage_state", failing)
    assert pid == reporter.proc.pid
    frozen = lag_json.read_bytes()
    # several more failed attempts (one a second: the backoff is capped at the report interval)
    wait_for("3 s more of failures", lambda: (failing() or (0, 0, 0, 0))[3] >= first_error_at + 3)
    assert lag_json.read_bytes() == frozen  # lag.json is frozen, and its generated_at says since when

    out = status(cfg)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    assert "database or disk is full" not in out.stderr
    assert f"REPORTER FAILING: {error}" in out.stdout, out.stdout
    assert error in out.stdout.split("STAGE")[1], out.stdout  # and in the reporter's stage row

    log = reporter.log()
    write_errors = [line for line in log.splitlines() if " ERROR " in line and "cannot write" in line]
    assert len(write_errors) == 1, "\n".join(write_errors)  # once per episode, not per attempt

    frozen_at = generated_at(lag_json)
    freed = time.monotonic()
    filler.unlink()
    wait_for("lag.json written again", lambda: generated_at(lag_json) not in (None, frozen_at), timeout=15)
    recovery = time.monotonic() - freed
    assert reporter.proc.poll() is None, "the reporter exited"
    assert json.loads(lag_json.read_bytes())["monitor"]["stages"]["reporter"]["pid"] == reporter.proc.pid
    log = wait_for("the recovery logged", lambda: "recovered" in reporter.log() and reporter.log())
    assert f"wrote {lag_json} again, after" in str(log)
    print(f"lag.json written again {recovery:.2f} s after the space came back")


def test_status_on_a_full_disk_with_no_stage_running(small_disk):
    """Nothing holds the -shm open and none can be made: status reads the file alone."""
    mnt, _ = small_disk
    cfg = write_config(mnt)
    seed(mnt / "state.db")
    assert not (mnt / "state.db-wal").exists()
    fill(mnt)
    out = status(cfg)
    assert out.returncode in (0, 1), out.stdout + out.stderr  # fresh or stale, read either way
    assert re.search(r"^sampler +1 ", out.stdout, re.M), out.stdout


def test_write_report_on_a_full_disk_names_the_file_not_the_temp_file(small_disk):
    mnt, _ = small_disk
    path = mnt / "lag.json"
    report.write_report(str(path), report.build_report([], generated_at=time.time()))
    before = path.read_bytes()
    fill(mnt)
    big = report.build_report([], generated_at=time.time(), monitor={"pad": "x" * 8192})
    messages = set()
    for _ in range(3):
        with pytest.raises(report.ReportWriteError) as exc:
            report.write_report(str(path), big)
        messages.add(str(exc.value))
        assert exc.value.errno == 28 and exc.value.kind == "ENOSPC"
    assert messages == {f"cannot write {path}: No space left on device (ENOSPC)"}
    assert path.read_bytes() == before
    assert sorted(p.name for p in mnt.iterdir()) == ["filler", "lag.json"]  # no temp file left


def test_a_stage_started_on_a_full_disk_says_the_disk_is_full(small_disk):
    """Its -shm cannot be made: exit 3 naming the full disk, not only "disk I/O error"."""
    mnt, _ = small_disk
    cfg = write_config(mnt)
    db = mnt / "state.db"
    seed(db)
    fill(mnt)
    before = db.read_bytes()
    out = subprocess.run(
        [sys.executable, "-m", "processes.housekeeper", "--config", str(cfg), "--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"database {db}: cannot use: the disk holding {mnt} is full" in out.stderr, out.stderr
    assert db.read_bytes() == before

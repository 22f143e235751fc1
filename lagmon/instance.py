"""One process per stage per database, and no process outliving its parent.

`hold(db_path, stage)` takes an exclusive `flock` on `<db_path>.<stage>.lock`. The kernel
releases it when the holder dies however it dies (SIGKILL, OOM), so a stale lock cannot block
a restart, and a live holder always blocks a second copy. The file holds the holder's pid so
the refusal can name it.

`watch_parent(on_orphan)` ends a process whose parent died (supervisord SIGKILLed, or the
sampler for its Kafka worker): the kernel sends SIGTERM at the parent's death
(PR_SET_PDEATHSIG), and a thread that polls the parent pid covers the window before prctl
and any platform without it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from lagmon import exits

PR_SET_PDEATHSIG = 1
PARENT_POLL_SECONDS = 0.5


class AlreadyRunning(Exception):
    """Another live process holds this stage's lock on this database."""


class InstanceLock:
    def __init__(self, path: str, fd: int):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1


def lock_path(db_path: str, stage: str) -> str:
    return f"{os.path.abspath(db_path)}.{stage}.lock"


def hold(db_path: str, stage: str) -> InstanceLock:
    """Take the stage's lock beside the database, or raise AlreadyRunning naming the holder."""
    path = lock_path(db_path, stage)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd)
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        who = f"pid {holder}" if holder else "another process"
        raise AlreadyRunning(
            f"another {stage} is already running on the database {os.path.abspath(db_path)} "
            f"({who} holds {path}); at most one {stage} may run per database"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return InstanceLock(path, fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def watch_parent(
    on_orphan: Callable[[], None], *, poll: float = PARENT_POLL_SECONDS, parent: int | None = None
) -> None:
    """Call on_orphan() once when this process's parent dies (its ppid changes).

    The parent is `parent` (a child told its parent's pid, so that a parent dead before this
    call is noticed) or the one at the time of the call. With prctl the kernel also sends SIGTERM at
    the parent's death, which reaches the stage's ordinary SIGTERM handler.
    """
    parent = os.getppid() if parent is None else parent
    _set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        on_orphan()
        return

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(poll)
        on_orphan()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _set_parent_death_signal(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def hold_or_exit_code(db_path: str, stage: str) -> InstanceLock | int:
    """hold(), or the exit code after printing why not on stderr: EXIT_LOCKED when another
    copy holds the lock, EXIT_DATABASE when the lock file cannot be created."""
    try:
        return hold(db_path, stage)
    except AlreadyRunning as exc:
        print(f"lagmon-{stage}: {exc}", file=sys.stderr)
        return exits.EXIT_LOCKED
    except OSError as exc:
        path = os.path.abspath(db_path)
        directory = os.path.dirname(path)
        if not os.access(directory, os.W_OK):
            return exits.database_error(
                f"database {path}: the {path}-wal and {path}-shm files could not be created in "
                f"{directory}, nor the lock file {lock_path(db_path, stage)}: the directory is not "
                f"writable by this user (uid {os.getuid()}); lagmon keeps these files beside the database"
            )
        if exc.errno == errno.ENOSPC:
            return exits.database_error(
                f"database {path}: cannot use: the disk holding {directory} is full "
                f"(creating the lock file {lock_path(db_path, stage)}: {exc})"
            )
        return exits.database_error(f"{lock_path(db_path, stage)}: cannot create the lock file: {exc}")


def stop_when_orphaned(stop: Callable[[], None], log: logging.Logger, *, bound: float) -> None:
    """When the parent dies: call stop() (the stage finishes its step and exits as on SIGTERM),
    and exit hard after ``bound`` seconds if it has not by then. SQLite (WAL) and lag.json
    (temp file, rename) stay intact however the process ends."""

    def on_orphan() -> None:
        log.warning("the parent process died (supervisord gone?): stopping")
        stop()
        timer = threading.Timer(bound, os._exit, args=(exits.EXIT_FAILED,))
        timer.daemon = True
        timer.start()

    watch_parent(on_orphan)


def wait_free(db_path: str, stages: Sequence[str], timeout: float) -> AlreadyRunning | None:
    """Wait up to ``timeout`` seconds for no process to hold any stage's lock on db_path (the
    orphans of a killed supervisord are stopping); the refusal of a lock still held, or None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for stage in stages:
                hold(db_path, stage).release()
            return None
        except AlreadyRunning as exc:
            if time.monotonic() >= deadline:
                return exc
        time.sleep(0.2)

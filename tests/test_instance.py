"""One stage per database (flock) and no process outliving its parent (issue 11, item 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lagmon import instance
from testing.traffic import wait_for


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_second_holder_is_refused_with_the_database_and_pid(tmp_path):
    db = str(tmp_path / "state.db")
    first = instance.hold(db, "sampler")
    try:
        with pytest.raises(instance.AlreadyRunning) as err:
            instance.hold(db, "sampler")
        text = str(err.value)
        assert os.path.abspath(db) in text and f"pid {os.getpid()}" in text and "sampler" in text
        other = instance.hold(db, "reporter")  # another stage on the same database is fine
        other.release()
    finally:
        first.release()
    instance.hold(db, "sampler").release()  # released: free again


def test_the_lock_of_a_sigkilled_holder_is_free_at_once(tmp_path):
    db = str(tmp_path / "state.db")
    code = f"from lagmon import instance; import sys, time; instance.hold({db!r}, 'sampler'); print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(instance.AlreadyRunning, match=f"pid {proc.pid}"):
            instance.hold(db, "sampler")
        proc.kill()
        proc.wait(10)
        instance.hold(db, "sampler").release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


CHILD = "import os, time\nfrom lagmon import instance\ninstance.watch_parent(lambda: os._exit(7))\nprint('watching', flush=True)\ntime.sleep(60)\n"
# A parent that starts a watching child, prints the child's pid and sleeps until killed.
ORPHAN = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.PIPE, text=True)\n"
    "assert child.stdout.readline().strip() == 'watching'\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_child_exits_within_seconds_of_its_parent_being_sigkilled():
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN, CHILD], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        started = time.monotonic()
        wait_for(lambda: not alive(child), 5, interval=0.05, what=f"orphan {child} to exit")
        assert time.monotonic() - started < 5
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if child and alive(child):
            os.kill(child, signal.SIGKILL)


def test_the_poll_alone_catches_a_dead_parent():
    """Without prctl (another platform), the parent-pid poll still ends the orphan."""
    code = CHILD.replace(
        "from lagmon import instance",
        "from lagmon import instance; instance._set_parent_death_signal = lambda s: False",
    )
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN, code], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not alive(child), 5, interval=0.05, what=f"orphan {child} to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if child and alive(child):
            os.kill(child, signal.SIGKILL)

"""lagmon.runner.supervise with a stand-in for supervisord (a real child process): the
signals it forwards and its exit codes (issue 11, item 2). The real supervisord is in
tests/test_supervisord.py."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

from lagmon import exits, runner
from testing.traffic import wait_for

# Prints its pid, ignores the first SIGTERM (as supervisord waiting on slow stages does) and
# sleeps; the second signal must not depend on its cooperation.
STUBBORN = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: print('got SIGTERM', flush=True))\n"
    "print(os.getpid(), flush=True)\n"
    "time.sleep(120)\n"
)
# Runs runner.supervise over STUBBORN; prints the child's pid line through.
PARENT = (
    "import sys\n"
    "from lagmon import runner\n"
    "sys.exit(runner.supervise('unused.conf', '/nonexistent/supervisor.sock', argv=[sys.executable, '-c', sys.argv[1]]))\n"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, STUBBORN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_a_second_signal_kills_the_child_and_exits_128_plus_n():
    proc, child = start()
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "got SIGTERM"  # forwarded, and ignored
        time.sleep(0.3)
        assert proc.poll() is None  # the first signal waits for the child
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 128 + signal.SIGINT
        assert "second signal" in proc.stderr.read()
        wait_for(lambda: not alive(child), 5, interval=0.05, what=f"child {child} to be killed")
    finally:
        for pid in (proc.pid, child):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)


def test_the_child_gets_sigterm_when_lagmon_run_is_sigkilled():
    proc, child = start()
    try:
        proc.kill()  # lagmon run SIGKILLed: the kernel sends supervisord SIGTERM (PDEATHSIG)
        proc.wait(10)
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the child got no signal when its parent died"
        assert proc.stdout.readline().strip() == "got SIGTERM"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_that_exits_by_itself_is_exit_1():
    proc = subprocess.run(
        [sys.executable, "-c", PARENT, "import sys; print(0, flush=True); sys.exit(5)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == exits.EXIT_FAILED
    assert "supervisord exited unexpectedly (status 5)" in proc.stderr


def test_exit_code_for_prefers_config_then_database_then_locked():
    assert runner.exit_code_for({"a": 3, "b": 2}) == exits.EXIT_CONFIG
    assert runner.exit_code_for({"a": 4, "b": 3}) == exits.EXIT_DATABASE
    assert runner.exit_code_for({"a": 4}) == exits.EXIT_LOCKED
    assert runner.exit_code_for({"a": 1, "b": -9}) == exits.EXIT_FAILED

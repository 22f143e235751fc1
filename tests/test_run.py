"""lagmon.runner: supervisord in the `lagmon run` process, with stand-in stages (real child
processes of a real supervisord): the signals, the exit codes, and that no stage outlives it
(issue 11, item 2; issue 14: no second Python process watches supervisord). The three real
stages under it are in tests/test_supervisord.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lagmon import exits, runner
from testing.stages import REPO
from testing.traffic import wait_for

pytestmark = pytest.mark.supervisord

# A stage that, like lagmon's, stops when its parent dies; it ignores SIGTERM (as a stage
# finishing a long step does), so only its parent's death or SIGKILL ends it.
STUBBORN = """\
import os, signal, sys, time
from lagmon import instance
instance.watch_parent(lambda: os._exit(0))
if sys.argv[2:] != ["cooperative"]:
    signal.signal(signal.SIGTERM, lambda *a: print("got SIGTERM", flush=True))
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def write_conf(base: Path, programs: dict[str, str]) -> Path:
    """A supervisord.conf in base with the given programs (name -> command)."""
    parts = [
        f"[unix_http_server]\nfile={base}/s.sock\n",
        f"[supervisord]\nlogfile={base}/supervisord.log\npidfile={base}/supervisord.pid\n"
        f"childlogdir={base}\nnodaemon=true\n",
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
    ]
    for name, command in programs.items():
        parts.append(
            f"[program:{name}]\ncommand={command}\ndirectory={REPO}\nstartsecs=1\nstartretries=1\n"
            f"stopwaitsecs=60\nredirect_stderr=true\nstdout_logfile={base}/{name}.log\n"
        )
    conf = base / "supervisord.conf"
    conf.write_text("\n".join(parts))
    return conf


def start(tmp_path: Path, programs: dict[str, str]) -> subprocess.Popen:
    conf = write_conf(tmp_path, programs)
    return subprocess.Popen(
        [sys.executable, "-m", "lagmon.runner", str(conf)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stubborn(tmp_path: Path, how: str = "") -> tuple[dict[str, str], Path]:
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    pidfile = tmp_path / "stubborn.pid"
    return {"stubborn": f"{sys.executable} {script} {pidfile} {how}".rstrip()}, pidfile


def started_pid(proc: subprocess.Popen, pidfile: Path) -> int:
    def read() -> int:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return int(pidfile.read_text()) if pidfile.exists() else 0

    return wait_for(read, 30, interval=0.05, what="the stand-in stage to start")


def cleanup(proc: subprocess.Popen, *pids: int) -> None:
    for pid in (proc.pid, *pids):
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def test_a_second_signal_exits_128_plus_n_and_the_stages_follow(tmp_path):
    programs, pidfile = stubborn(tmp_path)
    proc = start(tmp_path, programs)
    child = 0
    try:
        child = started_pid(proc, pidfile)
        # supervisord is the lagmon run process itself: the stage is its child
        assert runner.socket_owner(str(tmp_path / "s.sock"), str(tmp_path / "supervisord.pid")) == proc.pid
        assert int((Path("/proc") / str(child) / "stat").read_text().rsplit(")", 1)[1].split()[1]) == proc.pid
        proc.send_signal(signal.SIGTERM)
        wait_for(
            lambda: "got SIGTERM" in (tmp_path / "stubborn.log").read_text(), 10, what="SIGTERM at the stage"
        )
        time.sleep(0.3)
        assert proc.poll() is None  # the first signal waits for the stage (stopwaitsecs)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 128 + signal.SIGINT
        assert "second signal" in proc.stderr.read()
        wait_for(lambda: not alive(child), 5, interval=0.05, what=f"stage {child} to stop with its parent")
    finally:
        cleanup(proc, child)


def test_no_stage_outlives_a_sigkilled_lagmon_run(tmp_path):
    programs, pidfile = stubborn(tmp_path)
    proc = start(tmp_path, programs)
    child = 0
    try:
        child = started_pid(proc, pidfile)
        proc.kill()  # the OOM killer: its process manager sees the signal
        assert proc.wait(10) == -signal.SIGKILL
        wait_for(lambda: not alive(child), 5, interval=0.05, what=f"stage {child} to stop with its parent")
    finally:
        cleanup(proc, child)


def test_sighup_stops_everything_and_exits_0(tmp_path):
    proc = start(tmp_path, {"sleeper": f"{sys.executable} -c 'import time; time.sleep(120)'"})
    try:
        wait_for((tmp_path / "supervisord.pid").exists, 30, interval=0.05, what="supervisord")
        time.sleep(1.5)  # RUNNING
        proc.send_signal(signal.SIGHUP)  # not supervisord's reload: a stop
        assert proc.wait(30) == exits.EXIT_OK, proc.stderr.read() if proc.stderr else ""
    finally:
        cleanup(proc)


def test_a_stage_that_cannot_start_stops_everything_with_its_exit_code(tmp_path):
    programs, pidfile = stubborn(tmp_path, "cooperative")
    programs = {"broken": f"{sys.executable} -c 'import sys; sys.exit(3)'", "sleeper": programs["stubborn"]}
    proc = start(tmp_path, programs)
    child = 0
    try:
        child = started_pid(proc, pidfile)
        assert proc.wait(60) == exits.EXIT_DATABASE
        err = proc.stderr.read() if proc.stderr else ""
        assert "broken (exit 3) could not start and supervisord gave up (FATAL)" in err, err
        assert not alive(child)  # supervisord stopped the other stage before it exited
    finally:
        cleanup(proc, child)


def test_exit_code_for_prefers_config_then_database_then_locked():
    assert runner.exit_code_for({"a": 3, "b": 2}) == exits.EXIT_CONFIG
    assert runner.exit_code_for({"a": 4, "b": 3}) == exits.EXIT_DATABASE
    assert runner.exit_code_for({"a": 4}) == exits.EXIT_LOCKED
    assert runner.exit_code_for({"a": 1, "b": -9}) == exits.EXIT_FAILED

"""`lagmon run`'s parent process: supervisord in the foreground, watched.

supervisord alone keeps running with every stage FATAL and exits 0 on SIGTERM, so an
operator's process manager would see a healthy `lagmon run` that monitors nothing. This
parent starts supervisord as its child, forwards SIGTERM/SIGINT/SIGHUP to it, and every
second asks it (XML-RPC over its unix socket) for the stages' states. When a stage is FATAL,
lagmon cannot heal itself: it stops supervisord and exits with that stage's exit code
(2 config, 3 database, 4 another copy running), so the failure is loud. supervisord gets
SIGTERM from the kernel if this parent dies (PR_SET_PDEATHSIG), and each stage watches its own
parent the same way, so no process outlives its supervisor.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import xmlrpc.client
from collections.abc import Sequence
from typing import Any

from lagmon import exits, instance

POLL_SECONDS = 1.0
RPC_TIMEOUT = 10.0
LOG_TAIL_BYTES = 65536
# How long `lagmon run` waits for the stages of a killed supervisord to stop (their hard-exit
# bound after losing their parent is 5 s) before it refuses to start a second set.
ORPHANS_TIMEOUT = 15.0
STOP_TIMEOUT = 90.0  # supervisord's stopwaitsecs (30 s) per stage, stopped in parallel, plus margin


def socket_owner(sock_path: str, pid_path: str) -> int | None:
    """The pid of a live supervisord answering on sock_path, or None (no socket, or stale)."""
    if not os.path.exists(sock_path):
        return None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(sock_path)
    except OSError:
        return None  # stale: supervisord unlinks it and binds anew
    finally:
        probe.close()
    try:
        with open(pid_path, encoding="ascii") as fh:
            return int(fh.read().strip() or 0) or -1
    except (OSError, ValueError):
        return -1


def _proxy(sock_path: str) -> Any:
    """An XML-RPC proxy to supervisord whose calls time out (a hung supervisord cannot hang us)."""
    from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

    class TimedConnection(UnixStreamHTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(RPC_TIMEOUT)
            self.sock.connect(sock_path)

    transport = SupervisorTransport(serverurl=f"unix://{sock_path}")
    transport._get_connection = lambda: TimedConnection("localhost")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def fatal_stages(sock_path: str) -> dict[str, int] | None:
    """stage -> last exit status of each FATAL stage; None while supervisord does not answer.

    supervisord forgets the status of an exit "too quickly" (getProcessInfo says 0), which is
    exactly how a stage that cannot start ends, so the status comes from its own log line
    ``exited: <stage> (exit status N; not expected)``, read over the same socket."""
    try:
        proxy = _proxy(sock_path)
        infos = proxy.supervisor.getAllProcessInfo()
        fatal = [i["name"] for i in infos if i.get("statename") == "FATAL"]
        text = str(proxy.supervisor.readLog(-LOG_TAIL_BYTES, 0)) if fatal else ""
    except (OSError, xmlrpc.client.Error):
        return None
    out = {}
    for name in fatal:
        codes = re.findall(rf"exited: {re.escape(name)} \(exit status (\d+); not expected\)", text)
        out[name] = int(codes[-1]) if codes else exits.EXIT_FAILED
    return out


def exit_code_for(fatal: dict[str, int]) -> int:
    """The documented code of the most telling failure among FATAL stages."""
    codes = set(fatal.values())
    for code in (exits.EXIT_CONFIG, exits.EXIT_DATABASE, exits.EXIT_LOCKED):
        if code in codes:
            return code
    return exits.EXIT_FAILED


def _pdeathsig() -> None:  # runs in the child between fork and exec
    instance._set_parent_death_signal(signal.SIGTERM)


def supervise(conf: str, sock_path: str, *, argv: Sequence[str] | None = None) -> int:
    """Run supervisord -n -c conf until it exits or a stage is FATAL; the exit code."""
    cmd = list(argv or [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", conf])
    child = subprocess.Popen(cmd, preexec_fn=_pdeathsig)  # noqa: PLW1509 (only a prctl call)
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        if len(stopping) >= 2:  # a second signal: stop now (each stage then exits at once too)
            os.write(2, f"lagmon: second signal {signum}, exiting now\n".encode())
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            raise _SecondSignal(128 + signum)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        return _watch(child, sock_path, stopping)
    except _SecondSignal as exc:
        return exc.code
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if child.poll() is None:  # an exception above: never leave supervisord behind
            child.kill()
            child.wait(10)


class _SecondSignal(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _watch(child: subprocess.Popen, sock_path: str, stopping: list[int]) -> int:
    """Wait for supervisord to exit, or for a FATAL stage (then stop supervisord); the exit code."""
    while True:
        try:
            rc = child.wait(POLL_SECONDS)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is not None:
            if stopping:
                return exits.EXIT_OK if rc in (0, -signal.SIGTERM, -signal.SIGINT) else exits.EXIT_FAILED
            print(f"lagmon: supervisord exited unexpectedly (status {rc})", file=sys.stderr)
            return exits.EXIT_FAILED
        if stopping:
            continue
        fatal = fatal_stages(sock_path)
        if fatal:
            code = exit_code_for(fatal)
            names = ", ".join(f"{s} (exit {c})" for s, c in sorted(fatal.items()))
            print(
                f"lagmon: {names} could not start and supervisord gave up (FATAL); see the stage logs. "
                f"Stopping everything, exit {code}",
                file=sys.stderr,
            )
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
            return code

"""`lagmon run`'s process: supervisord itself, run in this process, watched from inside.

supervisord alone keeps running with every stage FATAL and exits 0 on SIGTERM, so an
operator's process manager would see a healthy `lagmon run` that monitors nothing. Here
supervisord's own main loop runs in the `lagmon run` process (cli.run execs
`python -m lagmon.runner CONF`, shedding the CLI's imports), watching its stages'
states: when a stage is FATAL, lagmon cannot heal itself, so supervisord stops
the others and this process exits with that stage's exit code (2 config, 3 database, 4 another
copy running), so the failure is loud. No second Python process watches the first: killed
(the OOM killer), `lagmon run` dies with its signal, which its process manager sees, and each
stage watches its own parent (PR_SET_PDEATHSIG and a poll) so no stage outlives it.

Signals: SIGTERM, SIGINT and SIGHUP stop everything (exit 0; SIGHUP does not reload, as
supervisord's own would); a second one exits at once with 128+N, and the stages, orphaned,
stop within their bound.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from lagmon import exits

# How long `lagmon run` waits for the stages of a killed supervisord to stop (their hard-exit
# bound after losing their parent is 5 s) before it refuses to start a second set.
ORPHANS_TIMEOUT = 15.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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


def exit_code_for(fatal: dict[str, int]) -> int:
    """The documented code of the most telling failure among FATAL stages."""
    codes = set(fatal.values())
    for code in (exits.EXIT_CONFIG, exits.EXIT_DATABASE, exits.EXIT_LOCKED):
        if code in codes:
            return code
    return exits.EXIT_FAILED


class _Watch:
    """The stop signals counted, and the FATAL stages with their last exit status."""

    def __init__(self, options: Any, shutdown: int):
        self.options, self.shutdown = options, shutdown
        self.stopping: list[int] = []
        self.fatal: dict[str, int] = {}
        self.exits: dict[str, int] = {}  # stage -> status of its last exit (1 for a signal)

    def setsignals(self) -> None:
        """Replaces ServerOptions.setsignals: supervisord's receiver for the rest."""
        receive = self.options.signal_receiver.receive
        for s in (signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR2):
            signal.signal(s, receive)
        for s in STOP_SIGNALS:
            signal.signal(s, self.on_stop_signal)

    def on_stop_signal(self, signum: int, frame: Any) -> None:
        self.stopping.append(signum)
        if len(self.stopping) >= 2:  # a second signal: stop now (each stage then exits at once too)
            os.write(2, f"lagmon: second signal {signum}, exiting now\n".encode())
            os._exit(128 + signum)
        self.options.signal_receiver.receive(signal.SIGTERM if signum == signal.SIGHUP else signum, frame)

    def on_fatal(self, name: str) -> None:
        self.fatal[name] = self.exits.get(name, exits.EXIT_FAILED)
        if self.stopping or len(self.fatal) > 1:
            return
        code = exit_code_for(self.fatal)
        print(
            f"lagmon: {name} (exit {self.fatal[name]}) could not start and supervisord gave up (FATAL); "
            f"see the stage logs. Stopping everything, exit {code}",
            file=sys.stderr,
            flush=True,
        )
        self.options.mood = self.shutdown

    def patch(self, subprocess_class: Any, fatal_state: int) -> None:
        """Wrap supervisord's Subprocess.finish, to record the exit status (supervisord forgets it
        for an exit "too quickly", which is exactly how a stage that cannot start ends), and
        change_state, to see FATAL (supervisord's event subscribers are cleared when it starts)."""
        from supervisor.options import decode_wait_status

        finish, change_state = subprocess_class.finish, subprocess_class.change_state

        def finished(process: Any, pid: int, sts: int) -> Any:
            status = decode_wait_status(sts)[0]
            self.exits[process.config.name] = status if status >= 0 else exits.EXIT_FAILED
            return finish(process, pid, sts)

        def changed(process: Any, new_state: int, expected: bool = True) -> Any:
            result = change_state(process, new_state, expected)
            if new_state == fatal_state:
                self.on_fatal(process.config.name)
            return result

        subprocess_class.finish, subprocess_class.change_state = finished, changed


def supervise(conf: str) -> int:
    """Run supervisord -n -c conf in this process until it stops; the exit code: 0 after a stop
    signal, the code of the FATAL stage(s) that made it stop, 1 for any other end."""
    from supervisor import process, supervisord
    from supervisor.options import ServerOptions
    from supervisor.states import ProcessStates, SupervisorStates

    options = ServerOptions()
    options.realize(["-n", "-c", conf], doc=supervisord.__doc__)
    watch = _Watch(options, SupervisorStates.SHUTDOWN)
    options.setsignals = watch.setsignals
    watch.patch(process.Subprocess, ProcessStates.FATAL)
    options.first, options.test = True, False  # as supervisord's main() sets them (no reload)
    supervisord.go(options)
    options.close_httpservers()
    options.close_logger()
    if watch.stopping:
        return exits.EXIT_OK
    if watch.fatal:
        return exit_code_for(watch.fatal)
    print("lagmon: supervisord stopped without a signal (supervisorctl shutdown?)", file=sys.stderr)
    return exits.EXIT_FAILED


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lagmon.runner SUPERVISORD_CONF (lagmon run starts it)", file=sys.stderr)
        return exits.EXIT_CONFIG
    return supervise(argv[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The `lagmon` console script: check-config, run, status.

main() is thin: parse the arguments, dispatch through COMMANDS, return the exit code
(lagmon.exits: 0 success, 1 stale data (status), 2 usage or configuration error,
3 database error, 4 another lagmon already runs on the run dir or the database). `python -m lagmon --config PATH` is `lagmon run --config PATH`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from lagmon import __version__, config, instance, report, runner, supervisor
from lagmon.exits import (
    EXIT_CONFIG,
    EXIT_DATABASE,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    config_error,
    database_error,
)
from lagmon.stages.reporter import Reporter
from lagmon.stages.runtime import printable
from lagmon.store import Store, StoreError

# sun_path of a unix socket holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def load_config(path: str) -> Any:
    """The config, or None after printing its error lines; warnings are printed either way."""
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        config_error(exc)
        return None
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return cfg


# --------------------------------------------------------------------------- check-config


def check_config(args: argparse.Namespace) -> int:
    """Validate the file; print the effective configuration (secrets masked) and any warnings."""
    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    print(f"# effective configuration of {args.config} (defaults filled in, secrets masked)")
    print(yaml.safe_dump(config.masked(cfg), sort_keys=False, default_flow_style=False), end="")
    return EXIT_OK


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    """supervisord in the foreground with the three stages, in this process (lagmon.runner):
    exit 0 on SIGTERM/SIGINT, or a FATAL stage's code (2 config, 3 database, 4 locked). Returns
    only on an error before supervisord starts."""
    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    db_dir = os.path.dirname(os.path.abspath(cfg.database.path))
    run_dir = os.path.abspath(args.run_dir or os.path.join(db_dir, "lagmon-run"))
    socket = os.path.join(run_dir, "supervisor.sock")
    if len(socket.encode()) > MAX_SOCKET_PATH:
        print(
            f"run error: --run-dir: the socket path {socket} is longer than {MAX_SOCKET_PATH} bytes; "
            "choose a shorter directory",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    owner = runner.socket_owner(socket, os.path.join(run_dir, "supervisord.pid"))
    if owner is not None:
        who = f"supervisord pid {owner}" if owner > 0 else "a live supervisord"
        print(
            f"run error: lagmon is already running in {run_dir} ({who} answers on {socket}); "
            "stop it first (SIGTERM to its `lagmon run`) or choose another --run-dir",
            file=sys.stderr,
        )
        return EXIT_LOCKED
    # The stages of a supervisord that was killed are still stopping: give them their bound.
    held = instance.wait_free(cfg.database.path, supervisor.STAGES, runner.ORPHANS_TIMEOUT)
    if held is not None:
        print(f"run error: {held}", file=sys.stderr)
        return EXIT_LOCKED
    log_dir = os.path.join(run_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    layout = supervisor.Layout(
        python=sys.executable,
        directory=os.getcwd(),
        config=os.path.abspath(args.config),
        log_dir=log_dir,
        run_dir=run_dir,
        nodaemon=True,
        debug=args.debug,
    )
    conf = os.path.join(run_dir, "supervisord.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(supervisor.render(layout))
    os.environ["LAGMON_CONFIG"] = layout.config
    print(f"lagmon: supervisord with {', '.join(supervisor.STAGES)}; logs in {log_dir}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # supervisord runs in this process (lagmon.runner), which sheds the CLI's imports first.
    os.execv(sys.executable, [sys.executable, "-m", "lagmon.runner", conf])


# --------------------------------------------------------------------------- status


def _age(now: float, ts: float | None) -> str:
    if ts is None:
        return "never"
    return f"{max(0, int(now - ts))}s ago"


def _table(rows: list[list[str]], right: frozenset[int] = frozenset()) -> str:
    """Columns two spaces apart, each as wide as its widest cell; the columns in ``right``
    right-aligned (numbers), the others left-aligned. Cells must be printable already."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    )


def _group_table(rows: list[report.ConsumerRow], statuses: dict, now: float) -> str:
    """The group/topics, the worst lag first."""
    if not rows:
        return "no consumer groups sampled yet"
    table = [["GROUP", "TOPIC", "STATUS", "LAG", "RESOLUTION", "LAST SAMPLE"]]
    for r in sorted(rows, key=lambda r: (-r.lag_seconds, r.group_id, r.topic)):
        st = statuses.get((r.group_id, r.topic))
        lag = report.lag_display(r.lag_seconds) + (" (at least)" if r.lag_lower_bound else "")
        table.append(
            [
                printable(r.group_id),
                printable(r.topic),
                r.status,
                lag,
                r.data_resolution,
                _age(now, st.last_sampled if st else None),
            ]
        )
    return _table(table, right=frozenset({3, 5}))


def _stage_table(stages: dict, now: float) -> str:
    rows = [["STAGE", "PID", "LAST SUCCESS", "HEARTBEAT", "LAST ERROR"]]
    for name in supervisor.STAGES:
        s = stages.get(name)
        if s is None:
            rows.append([name, "-", "never", "never", ""])
            continue
        error = ""
        if s.last_error and _current_error(s):
            error = f"{printable(s.last_error)} ({_age(now, s.last_error_at)})"
        rows.append([name, str(s.pid), _age(now, s.last_success), _age(now, s.heartbeat_at), error])
    return _table(rows, right=frozenset({1, 2, 3}))


def _current_error(s: Any) -> bool:
    """The stage's last error is newer than its last success (the store keeps old errors)."""
    return s.last_success is None or (s.last_error_at or 0) > s.last_success


def _headline(rows: list[report.ConsumerRow], monitor: dict, stages: dict, now: float) -> str:
    """The first lines: STALE and why when the sampler is behind, REPORTER FAILING when
    lag.json cannot be written (lag.json cannot say so itself), then the worst lag."""
    lines = []
    if monitor.get("stale"):
        reason = monitor.get("stale_reason", "the sampler has not completed a recent sample")
        lines += [
            f"STALE: {printable(reason)}",
            "       the lags below are computed from the last samples taken and may be out of date",
        ]
    elif monitor.get("starting"):
        reason = monitor.get("starting_reason", "the sampler has not completed its first sample yet")
        lines.append(f"STARTING: {printable(reason)}")
    reporter = stages.get("reporter")
    if reporter is not None and reporter.last_error and _current_error(reporter):
        lines += [
            f"REPORTER FAILING: {printable(reporter.last_error)}",
            "       lag.json is not being rewritten; its generated_at says when it last was"
            f" (the reporter's last success: {_age(now, reporter.last_success)})",
        ]
    if rows:
        worst = max(rows, key=lambda r: (r.lag_seconds, r.group_id, r.topic))
        lines.append(
            f"{len(rows)} group/topic(s); worst lag {report.lag_display(worst.lag_seconds)}: "
            f"group {printable(worst.group_id)} on topic {printable(worst.topic)}"
        )
    return "\n".join(lines)


def _open_store(path: str) -> Any:
    """The existing lagmon database at path, opened read-only (never created, migrated or
    written, so status works on a full disk and in a directory it cannot write), or None
    after printing why not."""
    if not os.path.exists(path):
        database_error(f"{path}: does not exist (has the sampler run yet?)")
        return None
    try:
        return Store(path, create=False, readonly=True)
    except StoreError as exc:
        database_error(exc)
        return None


def status(args: argparse.Namespace) -> int:
    """Groups and stage heartbeats from the database; exit 1 when the data is stale."""
    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    store = _open_store(cfg.database.path)
    if store is None:
        return EXIT_DATABASE
    try:
        now = time.time()
        statuses = store.group_statuses()
        rows = Reporter(cfg, store).rows(now)
        stages = store.stage_states()
    finally:
        store.close()
    monitor = report.build_monitor(
        stages,
        now=now,
        sample_interval=cfg.monitoring.sample_interval_seconds,
        request_timeout=cfg.kafka.request_timeout_seconds,
    )
    headline = _headline(rows, monitor, stages, now)
    if headline:
        print(headline)
        print()
    print(_group_table(rows, statuses, now))
    print()
    print(_stage_table(stages, now))
    return EXIT_FAILED if monitor.get("stale") else EXIT_OK


# --------------------------------------------------------------------------- main


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check-config": check_config,
    "run": run,
    "status": status,
}

_HELP = {
    "check-config": "validate the configuration and print it (secrets masked)",
    "run": "run the sampler, reporter and housekeeper",
    "status": "show the state of the stages and the groups",
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", required=True, metavar="PATH", help="YAML configuration file")
    common.add_argument("--debug", action="store_true", help="verbose logging")
    parser = argparse.ArgumentParser(prog="lagmon", description="Kafka consumer-group lag in seconds.")
    parser.add_argument("--version", action="version", version=f"lagmon {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {
        name: commands.add_parser(name, parents=[common], help=_HELP.get(name), description=_HELP.get(name))
        for name in COMMANDS
    }
    subparsers["run"].add_argument(
        "--run-dir",
        metavar="DIR",
        default=None,
        help="where supervisord keeps its socket, pid file and logs (default: lagmon-run/ beside the database)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (2), --help / --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("lagmon: error: a command is required", file=sys.stderr)
        return EXIT_CONFIG
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

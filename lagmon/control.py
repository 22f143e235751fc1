"""`lagmon run` and `lagmon status`: the operator's commands around the stages.

Exit codes (shared with the stages, see lagmon.runtime): 0 fine, 1 stale data
(status), 2 configuration or usage error, 3 database error.
"""

from __future__ import annotations

import os
import sys
import time

from lagmon import config, report, supervisor
from lagmon.store import Store, StoreError

# sun_path of a unix socket holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def load_config(path: str):
    """The config, or None after printing its error lines; warnings are printed either way."""
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return cfg


def run(config_path: str, *, debug: bool = False, run_dir: str | None = None) -> int:
    """Run supervisord in the foreground with the three stages (exec, so signals reach it)."""
    cfg = load_config(config_path)
    if cfg is None:
        return 2
    db_dir = os.path.dirname(os.path.abspath(cfg.database.path))
    run_dir = os.path.abspath(run_dir or os.path.join(db_dir, "lagmon-run"))
    socket = os.path.join(run_dir, "supervisor.sock")
    if len(socket.encode()) > MAX_SOCKET_PATH:
        print(
            f"run error: --run-dir: the socket path {socket} is longer than {MAX_SOCKET_PATH} bytes; "
            "choose a shorter directory",
            file=sys.stderr,
        )
        return 2
    log_dir = os.path.join(run_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    layout = supervisor.Layout(
        python=sys.executable,
        directory=os.getcwd(),
        config=os.path.abspath(config_path),
        log_dir=log_dir,
        run_dir=run_dir,
        nodaemon=True,
        debug=debug,
    )
    conf = os.path.join(run_dir, "supervisord.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(supervisor.render(layout))
    os.environ["LAGMON_CONFIG"] = layout.config
    print(f"lagmon: supervisord with {', '.join(supervisor.STAGES)}; logs in {log_dir}", file=sys.stderr)
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", conf])
    return 0  # not reached


def _age(now: float, ts: float | None) -> str:
    if ts is None:
        return "never"
    return f"{max(0, int(now - ts))}s ago"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def status(config_path: str) -> int:
    """Print groups and stage heartbeats from the database; exit 1 when the data is stale."""
    from lagmon.stages import Reporter

    cfg = load_config(config_path)
    if cfg is None:
        return 2
    if not os.path.exists(cfg.database.path):
        print(
            f"database error: {cfg.database.path}: does not exist (has the sampler run yet?)", file=sys.stderr
        )
        return 3
    try:
        store = Store(cfg.database.path, create=False)
    except StoreError as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return 3
    try:
        now = time.time()
        statuses = store.group_statuses()
        rows = sorted(Reporter(cfg, store).rows(now), key=lambda r: (-r.lag_seconds, r.group_id, r.topic))
        stages = store.stage_states()
    finally:
        store.close()
    table = [["GROUP", "TOPIC", "STATUS", "LAG", "RESOLUTION", "LAST SAMPLE"]]
    for r in rows:
        st = statuses.get((r.group_id, r.topic))
        lag = report.lag_display(r.lag_seconds) + (" (at least)" if r.lag_lower_bound else "")
        table.append(
            [
                r.group_id,
                r.topic,
                r.status,
                lag,
                r.data_resolution,
                _age(now, st.last_sampled if st else None),
            ]
        )
    print(_table(table) if len(table) > 1 else "no consumer groups sampled yet")
    print()
    srows = [["STAGE", "PID", "LAST SUCCESS", "HEARTBEAT", "LAST ERROR"]]
    for name in supervisor.STAGES:
        s = stages.get(name)
        if s is None:
            srows.append([name, "-", "never", "never", ""])
            continue
        error = ""
        if s.last_error and (s.last_success is None or (s.last_error_at or 0) > s.last_success):
            error = f"{s.last_error} ({_age(now, s.last_error_at)})"
        srows.append([name, str(s.pid), _age(now, s.last_success), _age(now, s.heartbeat_at), error])
    print(_table(srows))
    monitor = report.build_monitor(stages, now=now, sample_interval=cfg.monitoring.sample_interval_seconds)
    if monitor.get("stale"):
        print(f"\nSTALE: {monitor.get('stale_reason', 'the sampler has not completed a recent sample')}")
        return 1
    return 0

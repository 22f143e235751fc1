"""`./dev demo` (`python -m testing.demo`): lagmon doing its job on a local broker, shown live.

It starts a Kafka broker of its own (testing.broker.Broker on 127.0.0.1:19392-19394, data in
DIR/kafka) unless given `--bootstrap HOST:PORT`, makes demo traffic, runs the three stages with
`python -m lagmon run` (a real supervisord) and redraws what lag.json says every second:

    demo-live    on demo-orders  keeps up with the producer: lag about 0, ONLINE
    demo-behind  on demo-orders  processes each message 30 s after it was written: lag about 30 s
    demo-stops   on demo-orders  stops at 1:00 (OFFLINE a few samples later), resumes at 1:30
                                 at twice the produce rate (RECOVERING, then ONLINE)
    demo-burst   on demo-idle    caught up on an idle topic; 300 messages land at 0:40 and its lag jumps

The sampling intervals are short (MONITORING), so every state shows within about two minutes.
Ctrl-C, SIGTERM or SIGHUP (or `--duration`) stops everything it started: the traffic, lagmon
run (supervisord and its stages) and the broker, each by its pid with bounded waits.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testing import traffic
from testing.broker import Broker, alive
from testing.fetch import Failure
from testing.probe import metadata_ok
from testing.stages import REPO, write_config

PORT = 19392  # PLAINTEXT; SASL_PLAINTEXT on PORT + 1, the controller on PORT + 2
MONITORING = {
    "sample_interval_seconds": 2,
    "offline_sample_interval_seconds": 10,
    "report_interval_seconds": 1,
    "housekeeping_interval_seconds": 30,
    "offline_detection_consecutive_samples": 3,
    "online_lag_threshold_seconds": 10,
    "recovering_minimum_duration_seconds": 10,
}
RATE, PARTITIONS = 5.0, 3  # the orders topic: messages/second over its partitions
BEHIND = 30.0  # seconds demo-behind stays behind
STOP_AT, RESUME_AT = 60.0, 90.0  # demo-stops: seconds after the traffic started
CATCH_UP = 2 * RATE  # messages/second of the resumed demo-stops: it catches up
BURST_AT, BURST, BURST_READ = 40.0, 300, 10.0  # demo-burst: when, how many, read rate
SEED = 5  # messages demo-burst reads before the idle topic goes quiet
LAGMON_STOP_TIMEOUT = 90.0  # supervisord stops its stages in parallel (stopwaitsecs 30 each)
STAGES = ("sampler", "reporter", "housekeeper")
COLOURS = {"online": "32", "offline": "31", "recovering": "33"}


@dataclass(frozen=True)
class Names:
    """The demo's topics and groups, all starting with `prefix`."""

    prefix: str

    @property
    def orders(self) -> str:
        return f"{self.prefix}orders"

    @property
    def idle(self) -> str:
        return f"{self.prefix}idle"

    @property
    def live(self) -> str:
        return f"{self.prefix}live"

    @property
    def behind(self) -> str:
        return f"{self.prefix}behind"

    @property
    def stops(self) -> str:
        return f"{self.prefix}stops"

    @property
    def burst(self) -> str:
        return f"{self.prefix}burst"

    def roles(self) -> dict[str, str]:
        """group name -> role."""
        return {f"{self.prefix}{r}": r for r in ("live", "behind", "stops", "burst")}


def outside_prefix(prefix: str) -> list[str]:
    """fnmatch patterns that together match every name not starting with prefix (lagmon's
    exclude lists have no "only these"), so lagmon pointed at a shared broker samples only
    the demo's topics and groups."""
    if not prefix or not all(c.isalnum() or c in "._-" for c in prefix):
        raise ValueError(f"a demo prefix is letters, digits, '.', '_' and '-' only (got {prefix!r})")
    shorter = [prefix[:i] for i in range(1, len(prefix))]  # exact names: a proper prefix of prefix
    differing = [f"{prefix[:i]}[!{prefix[i]}]*" for i in range(len(prefix))]
    return shorter + differing


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def explain(role: str, elapsed: float) -> str:
    """What the demo does with a group, at `elapsed` seconds after the traffic started."""
    if role == "live":
        return f"reads as messages are written ({RATE:g} msg/s, {PARTITIONS} partitions): lag about 0"
    if role == "behind":
        return f"processes each message {BEHIND:g} s after it was written: a steady lag of about {BEHIND:g} s"
    if role == "stops":
        if elapsed < STOP_AT:
            return f"reads live; stops at {clock(STOP_AT)}: 3 samples without progress make it OFFLINE"
        if elapsed < RESUME_AT:
            return (
                f"stopped at {clock(STOP_AT)}, lag grows, sampled every 10 s; resumes at {clock(RESUME_AT)}"
            )
        return (
            f"resumed at {clock(RESUME_AT)}, reading {CATCH_UP / RATE:g}x the write rate: "
            "RECOVERING, ONLINE once lag < 10 s for 10 s"
        )
    if role == "burst":
        if elapsed < BURST_AT:
            return f"caught up on an idle topic (lag 0); {BURST} messages arrive at {clock(BURST_AT)}"
        return f"{BURST} messages arrived at {clock(BURST_AT)}; reading {BURST_READ:g} msg/s, its lag jumps, then 0"
    return ""


def age(stamp: str | None, now: float) -> str:
    if not stamp:
        return "-"
    try:
        then = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "?"
    return f"{max(0.0, now - then):.0f}s ago"


def rows(report: dict | None, roles: dict[str, str], elapsed: float, now: float) -> list[list[str]]:
    """The table (header row first) of a lag.json, the worst lag first."""
    table = [["GROUP", "TOPIC", "STATUS", "LAG", "RESOLUTION", "CALCULATED", "WHAT THE DEMO DOES"]]
    consumers = sorted(
        (report or {}).get("consumers", []), key=lambda c: (-c["lag_seconds"], c["group_id"], c["topic"])
    )
    for c in consumers:
        lag = f"{c['lag_seconds']} s" + (" (at least)" if c.get("lag_lower_bound") else "")
        role = roles.get(c["group_id"], "")
        table.append(
            [
                c["group_id"],
                c["topic"],
                c["status"].upper(),
                lag,
                c["data_resolution"],
                age(c.get("calculated_at"), now),
                explain(role, elapsed),
            ]
        )
    return table


def format_table(table: list[list[str]], colour: bool = False) -> list[str]:
    """Columns two spaces apart; LAG right-aligned; STATUS coloured when `colour`."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for n, r in enumerate(table):
        cells = []
        for i, (cell, width) in enumerate(zip(r, widths, strict=True)):
            text = cell.rjust(width) if i == 3 else cell.ljust(width)
            if colour and n and i == 2 and cell.lower() in COLOURS:
                text = f"\x1b[{COLOURS[cell.lower()]}m{text}\x1b[0m"
            cells.append(text)
        lines.append("  ".join(cells).rstrip())
    return lines


def clip(line: str, width: int) -> str:
    """line cut to `width` visible characters (colour sequences take no room), so it never wraps."""
    out, shown = [], 0
    for part in re.split(r"(\x1b\[[0-9;]*m)", line):
        if part.startswith("\x1b["):
            out.append(part)
        elif shown < width:
            out.append(part[: width - shown])
            shown += min(len(part), width - shown)
    return "".join(out) + ("\x1b[0m" if "\x1b[" in line else "")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


class Traffic:
    """The demo's producers and consumers, and the schedule that changes them."""

    def __init__(self, bootstrap: str, names: Names):
        self.bootstrap, self.names = bootstrap, names
        self.threads: list[traffic.SteadyProducer | traffic.LagConsumer] = []
        self.burst_producer: Any = None
        self.stopper: traffic.LagConsumer | None = None
        self.done: set[str] = set()

    def start(self) -> None:
        from confluent_kafka import Producer

        n = self.names
        traffic.create_topic(self.bootstrap, n.orders, PARTITIONS)
        traffic.create_topic(self.bootstrap, n.idle, 1)
        self.burst_producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        self._produce(n.idle, SEED)
        self._add(traffic.SteadyProducer(self.bootstrap, n.orders, PARTITIONS, RATE))
        self._add(traffic.LagConsumer(self.bootstrap, n.live, n.orders))
        self._add(traffic.LagConsumer(self.bootstrap, n.behind, n.orders, delay=BEHIND))
        self.stopper = self._add(traffic.LagConsumer(self.bootstrap, n.stops, n.orders))
        self._add(traffic.LagConsumer(self.bootstrap, n.burst, n.idle, max_rate=BURST_READ))

    def _add(self, thread):
        thread.start()
        self.threads.append(thread)
        return thread

    def _produce(self, topic: str, count: int) -> None:
        assert self.burst_producer is not None
        for i in range(count):
            self.burst_producer.produce(topic, b"burst %d" % i)
            self.burst_producer.poll(0)
        self.burst_producer.flush(10)

    def tick(self, elapsed: float) -> None:
        """Run the scheduled changes that are due."""
        if elapsed >= BURST_AT and "burst" not in self.done:
            self.done.add("burst")
            self._produce(self.names.idle, BURST)
        if elapsed >= STOP_AT and "stop" not in self.done:
            self.done.add("stop")
            assert self.stopper is not None
            self.stopper.stop_event.set()  # it closes (and commits) on its own; joined at the end
        if elapsed >= RESUME_AT and "resume" not in self.done:
            self.done.add("resume")
            self._add(
                traffic.LagConsumer(self.bootstrap, self.names.stops, self.names.orders, max_rate=CATCH_UP)
            )

    def stop(self, timeout: float = 30.0) -> None:
        for t in self.threads:
            t.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self.burst_producer is not None:
            self.burst_producer.flush(5)
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:
            say(
                f"{len(stuck)} traffic thread(s) did not stop within {timeout:.0f} s (they end with the demo)"
            )
        # Destroy the producers now, so none is left to log reconnects once the broker is gone.
        for t in self.threads:
            if isinstance(t, traffic.SteadyProducer) and not t.is_alive():
                t.producer = None  # type: ignore[assignment]
        self.burst_producer = None
        gc.collect()

    def delete(self) -> None:
        """Delete the demo's topics and groups (on a broker the demo did not start)."""
        n = self.names
        a = traffic.admin(self.bootstrap)
        waits = list(a.delete_topics([n.orders, n.idle], operation_timeout=10).values())
        groups = [n.live, n.behind, n.stops, n.burst]
        waits += list(a.delete_consumer_groups(groups, request_timeout=10).values())
        for future in waits:
            try:
                future.result(15)
            except Exception as exc:
                say(f"cleanup on {self.bootstrap}: {exc}")


@dataclass
class Demo:
    args: argparse.Namespace
    dir: Path = field(init=False)
    stopping: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    broker: Broker | None = None
    lagmon: subprocess.Popen | None = None
    pids: dict[str, int] = field(default_factory=dict)
    seen: dict[tuple[str, str], str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dir = Path(self.args.dir).expanduser().resolve()
        tag = "" if self.args.bootstrap is None else uuid.uuid4().hex[:4] + "-"
        self.names = Names(f"demo-{tag}")
        self.tty = sys.stdout.isatty()
        self.refresh = self.args.refresh or (1.0 if self.tty else 5.0)

    def on_signal(self, signum, _frame) -> None:
        if not self.stopping.is_set():
            self.reason = signal.Signals(signum).name
            self.stopping.set()

    # ------------------------------------------------------------------ start
    def start_broker(self) -> str:
        if self.args.bootstrap:
            if not metadata_ok(self.args.bootstrap):
                raise Failure(f"--bootstrap {self.args.bootstrap}: no Kafka broker answers there")
            return self.args.bootstrap
        port = self.args.port
        self.broker = Broker(port, port + 1, port + 2, workdir=self.dir / "kafka")
        if self.broker.status() == "running":
            say(
                f"a broker from an earlier demo run is still running from {self.broker.workdir}; restarting it"
            )
            self.broker.stop()
        say(
            f"starting Kafka {self.broker.version} on {self.broker.bootstrap} (workdir {self.broker.workdir})"
        )
        bootstrap = self.broker.start()
        self.pids["broker"] = self.broker.pid or 0
        return bootstrap

    def start_lagmon(self, bootstrap: str) -> None:
        for name in ("state.db", "state.db-wal", "state.db-shm", "lag.json"):
            (self.dir / name).unlink(missing_ok=True)  # a fresh history for every run
        exclude = outside_prefix(self.names.prefix)
        self.config = write_config(
            self.dir, bootstrap, monitoring=MONITORING, exclude={"topics": exclude, "groups": exclude}
        )
        self.run_dir = self.dir / "run"
        self.run_dir.mkdir(exist_ok=True)
        (self.run_dir / "supervisord.pid").unlink(missing_ok=True)
        self.lagmon_log = self.dir / "lagmon-run.log"
        cmd = [
            sys.executable,
            "-m",
            "lagmon",
            "run",
            "--config",
            str(self.config),
            "--run-dir",
            str(self.run_dir),
        ]
        with open(self.lagmon_log, "ab") as log:
            self.lagmon = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids["lagmon-run"] = self.lagmon.pid
        say(f"lagmon run pid {self.lagmon.pid}: config {self.config}, logs in {self.run_dir / 'logs'}")

    def note_pids(self, report: dict | None) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.pids.setdefault("supervisord", int((self.run_dir / "supervisord.pid").read_text().strip()))
        stages = ((report or {}).get("monitor") or {}).get("stages") or {}
        for stage in STAGES:
            pid = (stages.get(stage) or {}).get("pid")
            if pid:
                self.pids.setdefault(stage, int(pid))  # a restarted stage is noted as stage~
                if self.pids[stage] != pid:
                    self.pids[f"{stage}~{pid}"] = int(pid)

    def note_changes(self, report: dict | None, elapsed: float) -> None:
        for c in (report or {}).get("consumers", []):
            key, status = (c["group_id"], c["topic"]), c["status"]
            before = self.seen.get(key)
            if before is not None and before != status:
                self.changes.append(
                    f"  {clock(elapsed)}  {key[0]} on {key[1]}: {before.upper()} -> {status.upper()}"
                )
            self.seen[key] = status

    # ------------------------------------------------------------------ screen
    def screen(self, report: dict | None, elapsed: float, now: float) -> list[str]:
        where = (
            f"{self.broker.bootstrap} (Kafka {self.broker.version}, started by the demo)"
            if self.broker
            else f"{self.args.bootstrap} (--bootstrap)"
        )
        if report is None:
            state = "lag.json: not written yet (waiting for the first sample)"
        else:
            monitor = report.get("monitor") or {}
            state = f"lag.json written {age(report.get('generated_at'), now)}  monitor.stale: {str(bool(monitor.get('stale'))).lower()}"
        m = MONITORING
        lines = [
            f"lagmon demo  broker {where}  elapsed {clock(elapsed)}  {state}",
            "pids: demo " + str(os.getpid()) + "".join(f", {k} {v}" for k, v in self.pids.items()),
            f"dir {self.dir}  (config.yaml, lag.json, run/logs/)",
            f"sample every {m['sample_interval_seconds']} s (OFFLINE groups every {m['offline_sample_interval_seconds']} s); "
            f"{m['offline_detection_consecutive_samples']} samples without progress -> OFFLINE; "
            f"RECOVERING until lag < {m['online_lag_threshold_seconds']} s for {m['recovering_minimum_duration_seconds']} s",
            "",
        ]
        table = rows(report, self.names.roles(), elapsed, now)
        lines += (
            format_table(table, colour=self.tty) if len(table) > 1 else ["no consumer group in lag.json yet"]
        )
        lines += ["", "state changes:"] + (self.changes[-6:] or ["  (none yet)"])
        lines += ["", "Ctrl-C stops everything the demo started."]
        return lines

    def draw(self, lines: list[str]) -> None:
        if self.tty:
            try:  # the terminal itself, not $COLUMNS (which a parent may have left stale)
                width = os.get_terminal_size(sys.stdout.fileno()).columns
            except OSError:
                width = 160
            out = "\x1b[H" + "".join(clip(line, width) + "\x1b[K\n" for line in lines) + "\x1b[J"
        else:
            out = f"--- {time.strftime('%H:%M:%S')}\n" + "\n".join(lines) + "\n"
        sys.stdout.write(out)
        sys.stdout.flush()

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        self.dir.mkdir(parents=True, exist_ok=True)
        say(f"working directory {self.dir}")
        flow: Traffic | None = None
        code = 0
        try:
            bootstrap = self.start_broker()
            if not self.stopping.is_set():
                self.start_lagmon(bootstrap)
            if not self.stopping.is_set():
                flow = Traffic(bootstrap, self.names)
                flow.start()
                code = self.loop(flow)
        except Failure as exc:
            say(f"error: {exc}")
            code = exc.code
        finally:
            self.stop(flow)
            # For a caller that cannot see the exit status (tmux records it late, or not at all).
            with contextlib.suppress(OSError):
                (self.dir / "exit-code").write_text(f"{code}\n")
        return code

    def loop(self, flow: Traffic) -> int:
        t0 = time.monotonic()
        if self.tty:
            sys.stdout.write("\x1b[2J")
        next_draw = 0.0
        while not self.stopping.is_set():
            elapsed = time.monotonic() - t0
            if self.args.duration is not None and elapsed >= self.args.duration:
                self.reason = f"--duration {self.args.duration:g}"
                break
            assert self.lagmon is not None
            if self.lagmon.poll() is not None:
                tail = self.lagmon_log.read_text(errors="replace").splitlines()[-15:]
                say(
                    f"lagmon run exited with {self.lagmon.returncode}; {self.lagmon_log}:\n" + "\n".join(tail)
                )
                return 1
            flow.tick(elapsed)
            if time.monotonic() >= next_draw:
                report = traffic.read_report(self.dir / "lag.json")
                self.note_pids(report)
                self.note_changes(report, elapsed)
                self.draw(self.screen(report, elapsed, time.time()))
                next_draw = time.monotonic() + self.refresh
            self.stopping.wait(0.25)
        return 0

    # ------------------------------------------------------------------ stop
    def stop(self, flow: Traffic | None) -> None:
        say(
            f"stopping ({self.reason or 'done'}): traffic, lagmon run, "
            + ("the broker" if self.broker else "no broker")
        )
        if flow is not None:
            flow.stop()
            if self.broker is None:
                flow.delete()
        if self.lagmon is not None:
            self._stop_lagmon()
        if self.broker is not None:
            self.broker.stop()
        left = [f"{k} {v}" for k, v in self.pids.items() if alive(v) and str(self.dir) in cmdline(v)]
        if left:
            say("still running: " + ", ".join(left))
        else:
            say("stopped: " + ", ".join(f"{k} {v}" for k, v in self.pids.items()) + "; nothing left running")

    def _stop_lagmon(self) -> None:
        assert self.lagmon is not None
        if self.lagmon.poll() is None:
            self.lagmon.send_signal(signal.SIGTERM)
            try:
                self.lagmon.wait(LAGMON_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                say(f"lagmon run did not stop within {LAGMON_STOP_TIMEOUT:.0f} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.lagmon.pid, signal.SIGKILL)
                self.lagmon.wait(10)
        # Anything of ours still there (a stage supervisord lost): its command line names our dir.
        for name, pid in self.pids.items():
            if name != "broker" and alive(pid) and str(self.dir) in cmdline(pid):
                say(f"{name} pid {pid} outlived lagmon run; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for n, p in self.pids.items() if n != "broker"):
            time.sleep(0.1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m testing.demo",
        description="A local Kafka broker, demo traffic and lagmon under supervisord, shown live. Ctrl-C stops it all.",
    )
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="use this broker instead of starting one")
    p.add_argument(
        "--port",
        type=int,
        default=PORT,
        help=f"the demo broker's port (+1 SASL, +2 controller; default {PORT})",
    )
    p.add_argument(
        "--dir",
        default="demo-run",
        help="working directory: config, database, lag.json, logs (default ./demo-run)",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop by itself after this long (from the traffic start)",
    )
    p.add_argument(
        "--refresh",
        type=float,
        metavar="SECONDS",
        help="redraw interval (default 1 s on a terminal, else 5 s)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.refresh is not None and args.refresh <= 0:
        build_parser().error("--refresh must be > 0")
    return Demo(args).run()


if __name__ == "__main__":
    sys.exit(main())

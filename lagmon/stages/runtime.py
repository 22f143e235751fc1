"""Run one lagmon stage (sampler, reporter, housekeeper) as a long-lived process.

A stage is a ``step(now) -> seconds-until-next-run | None`` function.  This
module owns everything around it: argument parsing, logging, loading the
config, opening the store, signals, the monotonic schedule, heartbeats and
error backoff.  Each stage module (lagmon.stages.<stage>) only builds its step
(``make_step``); processes/<stage>.py only calls that module's main().

Usage of a stage process::

    lagmon-<stage> --config PATH [--debug] [--once]

Exit codes (lagmon.exits):

    0    stopped cleanly (SIGTERM/SIGINT), or the --once step succeeded
    1    the --once step failed (or building the step failed)
    2    configuration error (each error printed on stderr; also bad arguments)
    3    database error (cannot open/create/migrate the SQLite file)
    4    another copy of this stage already runs on this database (lagmon.instance)
    128+N  a second signal N arrived while stopping: exit at once (143 = SIGTERM)

A step may raise ``Fatal(message, code)`` to stop the process at once with
that code (e.g. ``Fatal("...", EXIT_CONFIG)`` for a problem only found at run
time).  Any other exception from a step is logged once per outage, recorded
in the stage's heartbeat row and retried with exponential backoff (1 s, 2 s,
4 s ... capped at min(interval, 60)); the process never crashes on it.

Signals: the first SIGTERM or SIGINT only sets a flag and wakes the waiting
loop; the loop finishes the current step and exits 0.  A second signal exits
immediately with ``os._exit(128 + signum)``.

One copy, no orphans (lagmon.instance): a stage takes its lock beside the database before
opening it (exit 4 naming the holder's pid when held) and stops as on SIGTERM when its
parent dies, exiting hard after ORPHAN_EXIT_SECONDS if its step does not return.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from lagmon import instance, memory
from lagmon.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, config_error, database_error

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
# An orphaned stage (its parent died) gets this long to finish its step before it exits hard.
ORPHAN_EXIT_SECONDS = 5.0

LOG_FORMAT = "%(asctime)s %(levelname)s lagmon.{stage} %(message)s"

Step = Callable[[float], "float | None"]


class Fatal(Exception):
    """Raised by a step to end the process at once with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.code = code


# --------------------------------------------------------------------------- logging / args


_handler: logging.Handler | None = None


def setup_logging(stage: str, debug: bool) -> logging.Logger:
    """Log to stderr (supervisord keeps one log per stage); INFO, or DEBUG with
    --debug.  Configures the root logger, so lagmon.kafka etc. share the format.
    Calling it again replaces the handler it installed before."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter(LOG_FORMAT.format(stage=stage)))
    root.addHandler(_handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    return logging.getLogger(f"lagmon.{stage}")


def parse_args(stage: str, argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"lagmon-{stage}", description=f"Run the lagmon {stage} stage.")
    p.add_argument("--config", required=True, metavar="PATH", help="YAML config file")
    p.add_argument("--debug", action="store_true", help="log at DEBUG level")
    p.add_argument("--once", action="store_true", help="run one step and exit (0 ok, 1 failed)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- signals


class StopFlag:
    """Set by the first SIGTERM/SIGINT; the loop waits on it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self._count = 0
        self._previous: dict[int, Any] = {}

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True as soon as a stop is requested."""
        return self._event.wait(min(max(0.0, timeout), threading.TIMEOUT_MAX))

    def handle(self, signum: int, frame: Any = None) -> None:
        """Signal handler: only sets the flag; the second signal exits at once.
        (No logging here: the logging stream may be mid-write in this thread.)"""
        self._count += 1
        if self._count >= 2:
            try:
                os.write(2, f"lagmon: second signal {signum}, exiting now\n".encode())
            finally:
                os._exit(128 + signum)
        self.set(signum)

    def install(self, signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Install ``handle`` for the signals (main thread only)."""
        for s in signums:
            self._previous[s] = signal.signal(s, self.handle)

    def restore(self) -> None:
        for s, old in self._previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        self._previous.clear()


def _signame(signum: int | None) -> str:
    try:
        return signal.Signals(signum).name  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return str(signum)


def printable(text: object) -> str:
    """``text`` with its non-printable characters escaped as repr() does (a newline as \\n,
    ESC as \\x1b) and nothing else changed, so a group id or topic cannot forge a log line or
    break a table."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


# --------------------------------------------------------------------------- loop


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _outage_key(exc: BaseException) -> str:
    """What makes a repeated failure the same outage (logged once): the exception's type and
    its ``kind`` when it has one (KafkaUnavailable: its text names the request that failed,
    which changes from retry to retry), otherwise its type and message."""
    kind = getattr(exc, "kind", None)
    return f"{type(exc).__name__} kind={kind}" if isinstance(kind, str) else _describe(exc)


class _Heartbeat:
    """store.heartbeat that never raises; its own failures logged once per outage."""

    def __init__(self, stage: str, store: Any, log: logging.Logger, started_at: float, interval: float):
        self.stage, self.store, self.log = stage, store, log
        self.started_at, self.interval = started_at, interval
        self.pid = os.getpid()
        self.failing: str | None = None

    def __call__(self, at: float, success: bool, error: str | None = None) -> None:
        try:
            self.store.heartbeat(
                self.stage,
                pid=self.pid,
                started_at=self.started_at,
                at=at,
                interval=self.interval,
                success=success,
                error=error,
            )
        except Exception as exc:
            msg = _describe(exc)
            if msg != self.failing:
                self.log.warning("could not record heartbeat: %s", msg)
            self.failing = msg
        else:
            if self.failing is not None:
                self.log.info("heartbeat recorded again")
            self.failing = None

    def started(self) -> None:
        """Record this process's start (pid, started_at) without claiming a success or an error."""
        record = getattr(self.store, "stage_started", None)
        try:
            if record is not None:
                record(self.stage, pid=self.pid, started_at=self.started_at, interval=self.interval)
        except Exception as exc:
            self.log.warning("could not record the start: %s", _describe(exc))


def _backoff_cap(interval: float) -> float:
    return max(0.0, min(float(interval), BACKOFF_MAX))


# A broker coming back from an outage answers some requests before others (a restarted group
# coordinator still loading its offsets): "connected, no answer in time" right after
# "unreachable", with no success between, is the tail of the same outage, not a new one.
CONTINUES = {"KafkaUnavailable kind=timeout": "KafkaUnavailable kind=unreachable"}


class _Outage:
    """Consecutive failures of the step: their backoff, and the logging (the first failure of
    an outage at ERROR, its repeats at DEBUG, the recovery at INFO)."""

    def __init__(self, log: logging.Logger, backoff_cap: float):
        self.log, self.backoff_cap = log, backoff_cap
        self.failures = 0
        self.key: str | None = None  # _outage_key of the error being repeated, if any

    def failed(self, exc: Exception, once: bool) -> float:
        """Log the failure; returns the seconds to wait before the next attempt."""
        self.failures += 1
        msg, key = _describe(exc), _outage_key(exc)
        if self.key is not None and CONTINUES.get(key) == self.key:
            key = self.key  # a broker coming back: still the outage that was logged
        wait = min(BACKOFF_START * 2 ** min(self.failures - 1, 30), self.backoff_cap)
        if once:
            self.log.error("step failed: %s", msg)
        elif key != self.key:
            self.log.error(
                "step failed: %s; retrying in %g s, backing off up to %g s", msg, wait, self.backoff_cap
            )
        else:
            self.log.debug("step failed again (%d): %s", self.failures, msg)
        self.log.debug("traceback of the failed step", exc_info=exc)
        self.key = key
        return wait

    def succeeded(self) -> None:
        if self.key is not None:
            self.log.info("recovered: step succeeded after %d failed attempt(s)", self.failures)
            self.key, self.failures = None, 0


def _delay_seconds(delay: object, interval: float, log: logging.Logger) -> float:
    """The step's return value as a delay: ``interval`` for None, non-numbers and non-finite."""
    if delay is None:
        return max(0.0, float(interval))
    try:
        seconds = float(delay)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        log.warning("step returned %r instead of seconds; using %g s", delay, interval)
        seconds = float(interval)
    if not math.isfinite(seconds):
        seconds = float(interval)
    return max(0.0, seconds)


def _sleep_until(deadline: float, stop: StopFlag, clock: Callable[[], float]) -> None:
    remaining = deadline - clock()
    if remaining > 0:
        stop.wait(remaining)


def run_stage(
    stage: str,
    step: Step,
    *,
    interval: float,
    store: Any,
    once: bool,
    stop: StopFlag,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> int:
    """Call ``step(wall())`` on a monotonic schedule until ``stop`` is set.

    The next run is due ``delay`` seconds after the START of the previous one
    (delay = the step's return value, or ``interval`` when it returns None),
    so the schedule does not drift; an overrunning step is followed at once
    by the next.  A failed step is retried after 1 s, 2 s, 4 s ... (capped at
    min(interval, 60)) counted from the END of the failed step.  Returns the
    exit code (see the module docstring).
    """
    log = logging.getLogger(f"lagmon.{stage}")
    heartbeat = _Heartbeat(stage, store, log, wall(), interval)
    heartbeat.started()  # the start is visible before the first step ends (monitor.starting)
    outage = _Outage(log, _backoff_cap(interval))

    while not stop.is_set():
        started = clock()
        try:
            delay = step(wall())
        except Fatal as exc:
            log.error("fatal: %s (exit %d)", exc.message, exc.code)
            heartbeat(wall(), False, f"fatal: {exc.message}")
            return exc.code
        except Exception as exc:
            failed_at = clock()
            wait = outage.failed(exc, once)
            heartbeat(wall(), False, _describe(exc))
            if once:
                return EXIT_FAILED
            _sleep_until(failed_at + wait, stop, clock)  # backoff counts from the failure
            continue
        outage.succeeded()
        heartbeat(wall(), True)
        if once:
            return EXIT_OK
        memory.trim()  # the step's garbage back to the kernel: the RSS between steps is real
        _sleep_until(started + _delay_seconds(delay, interval, log), stop, clock)

    log.info("stopping on %s", _signame(stop.signum) if stop.signum else "request")
    return EXIT_OK


# --------------------------------------------------------------------------- main


MakeStep = Callable[[Any, Any, logging.Logger], "tuple[Step, float]"]


def _load_config(path: str, log: logging.Logger) -> Any:
    """The config, or None after printing its errors; its warnings are logged."""
    config = importlib.import_module("lagmon.config")
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        config_error(exc)
        return None
    for warning in cfg.warnings:
        log.warning("%s", warning)
    return cfg


def _build_step(stage: str, make_step: MakeStep, cfg: Any, store: Any, log: logging.Logger) -> Any:
    """make_step's (step, interval), or the exit code when it fails."""
    try:
        return make_step(cfg, store, log)
    except Fatal as exc:
        log.error("fatal: %s (exit %d)", exc.message, exc.code)
        return exc.code
    except Exception as exc:
        log.error("could not start the %s: %s", stage, _describe(exc))
        log.debug("traceback", exc_info=exc)
        return EXIT_FAILED


def stage_main(stage: str, make_step: MakeStep, argv: list[str] | None = None) -> int:
    """The main of every stage (lagmon.stages.<stage>.main); returns the exit code.

    make_step(cfg, store, logger) -> (step, interval) should only build
    objects (no network I/O); it may raise Fatal.
    """
    args = parse_args(stage, argv)
    log = setup_logging(stage, args.debug)
    stop = StopFlag()
    instance.stop_when_orphaned(stop.set, log, bound=ORPHAN_EXIT_SECONDS)
    cfg = _load_config(args.config, log)
    if cfg is None:
        return EXIT_CONFIG
    lock = instance.hold_or_exit_code(cfg.database.path, stage)  # before the database is opened
    if isinstance(lock, int):
        return lock
    store_mod = importlib.import_module("lagmon.store")
    try:
        store = store_mod.Store(cfg.database.path)
    except store_mod.StoreError as exc:
        lock.release()
        return database_error(exc)
    try:
        built = _build_step(stage, make_step, cfg, store, log)
        if isinstance(built, int):
            return built
        step, interval = built
        stop.install()
        once = ", once" if args.once else ""
        log.info(
            "started %s (pid %d, config %s, interval %g s%s)", stage, os.getpid(), args.config, interval, once
        )
        return run_stage(stage, step, interval=interval, store=store, once=args.once, stop=stop)
    finally:
        stop.restore()
        try:
            store.close()
        except Exception as exc:
            log.warning("closing the database failed: %s", _describe(exc))
        lock.release()

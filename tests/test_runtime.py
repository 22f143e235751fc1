"""Tests for lagmon.stages.runtime: schedule, backoff, once, Fatal, logging, signals, stage_main."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from lagmon.stages import runtime
from lagmon.stages.runtime import Fatal, StopFlag, parse_args, run_stage, setup_logging

STAGE = "teststage"


# ----------------------------------------------------------------- fakes


from tests.helpers import Clock, write_config  # noqa: E402


class FakeStop(StopFlag):
    """StopFlag whose wait() advances the fake clock instead of sleeping."""

    def __init__(self, clock: Clock):
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float) -> bool:
        if self.is_set():  # like Event.wait: returns at once
            return True
        self.waits.append(round(timeout, 6))
        self.clock.t += timeout
        return self.is_set()


class FakeStore:
    def __init__(self, fail: Exception | None = None):
        self.beats: list[dict] = []
        self.fail = fail
        self.closed = False

    def heartbeat(self, stage, **kw):
        if self.fail is not None:
            raise self.fail
        self.beats.append(dict(kw, stage=stage))

    def close(self):
        self.closed = True


class Script:
    """A step driven by a list of actions: a number = run that long (monotonic
    seconds) and return None; ("delay", run, d) = return d; an exception = raise
    it.  Stops the loop when the actions run out."""

    def __init__(self, clock: Clock, stop: StopFlag, actions):
        self.clock, self.stop, self.actions = clock, stop, list(actions)
        self.starts: list[float] = []
        self.nows: list[float] = []

    def __call__(self, now: float):
        self.starts.append(self.clock.t)
        self.nows.append(now)
        action = self.actions.pop(0)
        if not self.actions:
            self.stop.set(signal.SIGTERM)
        if isinstance(action, BaseException):
            raise action
        if isinstance(action, tuple):
            _, run, delay = action
            self.clock.t += run
            return delay
        self.clock.t += action
        return None


def loop(actions, *, interval=10.0, once=False, store=None):
    clock = Clock(1000.0)
    wall = Clock(1_700_000_000.0)
    stop = FakeStop(clock)
    step = Script(clock, stop, actions)
    store = store or FakeStore()
    code = run_stage(
        STAGE, step, interval=interval, store=store, once=once, stop=stop, clock=clock, wall=wall
    )
    return code, [round(s - 1000.0, 6) for s in step.starts], stop.waits, store


# ----------------------------------------------------------------- schedule


def test_schedule_is_drift_free():
    code, starts, waits, store = loop([0.3] * 6, interval=10)
    assert code == 0
    assert starts == [0, 10, 20, 30, 40, 50]
    assert waits == [9.7] * 5
    assert len(store.beats) == 6 and all(b["success"] for b in store.beats)


def test_step_return_value_sets_next_run_from_step_start():
    _code, starts, waits, _ = loop([("d", 1, 5), ("d", 1, 0), ("d", 2, 30), 0.5, 0], interval=10)
    assert starts == [0, 5, 6, 36, 46]
    assert waits == [4, 28, 9.5]  # a 0 delay runs again at once, without waiting


def test_overrunning_step_runs_again_at_once_without_catch_up_burst():
    _code, starts, waits, _ = loop([25, 1, 1], interval=10)
    assert starts == [0, 25, 35]
    assert waits == [9]


def test_bad_delay_values_fall_back_to_interval():
    _code, starts, _, _ = loop(
        [("d", 0, float("nan")), ("d", 0, "soon"), ("d", 0, float("inf")), ("d", 0, -3), 0], interval=10
    )
    assert starts == [0, 10, 20, 30, 30]


def test_heartbeat_fields():
    clock = Clock(1000.0)
    stop = FakeStop(clock)
    store = FakeStore()
    walls = iter([500.0, 501.0, 502.0, 503.0])
    step = Script(clock, stop, [0])
    assert (
        run_stage(
            STAGE, step, interval=7, store=store, once=False, stop=stop, clock=clock, wall=lambda: next(walls)
        )
        == 0
    )
    assert step.nows == [501.0]
    assert store.beats == [
        dict(stage=STAGE, pid=os.getpid(), started_at=500.0, at=502.0, interval=7, success=True, error=None)
    ]


def test_stop_already_set_runs_nothing():
    clock = Clock(1000.0)
    stop = FakeStop(clock)
    stop.set(signal.SIGINT)
    step = Script(clock, stop, [0])
    assert run_stage(STAGE, step, interval=1, store=FakeStore(), once=False, stop=stop, clock=clock) == 0
    assert step.starts == []


# ----------------------------------------------------------------- errors and backoff


def test_backoff_sequence_capped_at_interval():
    errs = [RuntimeError("kafka down")] * 7
    code, _starts, waits, store = loop(errs + [0.5, 0], interval=10)
    assert code == 0
    assert waits == [1, 2, 4, 8, 10, 10, 10, 9.5]
    assert [b["success"] for b in store.beats] == [False] * 7 + [True, True]
    assert store.beats[0]["error"] == "RuntimeError: kafka down"


def test_backoff_capped_at_60_and_reset_after_success():
    errs = [OSError("x")] * 9
    _code, _starts, waits, _ = loop(errs + [0, OSError("x"), 0], interval=300)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60, 300, 1]


def test_backoff_counts_from_end_of_failed_step():
    class Slow(Exception):
        pass

    clock = Clock(1000.0)
    stop = FakeStop(clock)
    calls = []

    def step(now):
        calls.append(clock.t)
        clock.t += 3
        if len(calls) == 3:
            stop.set()
        raise Slow("timeout")

    run_stage(STAGE, step, interval=60, store=FakeStore(), once=False, stop=stop, clock=clock)
    assert [c - 1000 for c in calls] == [0, 4, 9]
    assert stop.waits == [1, 2]


def test_repeated_error_logged_once_and_recovery_logged(caplog):
    caplog.set_level(logging.INFO, logger="lagmon")
    errs = [RuntimeError("a")] * 5 + [RuntimeError("b")] * 3 + [RuntimeError("a")]
    loop(errs + [0, RuntimeError("a"), 0], interval=10)
    msgs = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == f"lagmon.{STAGE}"]
    errors = [m for lvl, m in msgs if lvl == "ERROR"]
    assert len(errors) == 4, msgs  # a, b, a (message changed), a again in a new outage
    assert "RuntimeError: a" in errors[0] and "retrying in 1 s" in errors[0]
    assert "RuntimeError: b" in errors[1]
    recovered = [m for lvl, m in msgs if "recovered" in m]
    assert recovered == [
        "recovered: step succeeded after 9 failed attempt(s)",
        "recovered: step succeeded after 1 failed attempt(s)",
    ]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback at INFO


def test_no_answer_while_a_broker_comes_back_continues_its_unreachable_outage(caplog):
    from lagmon.kafka import KafkaUnavailable

    caplog.set_level(logging.INFO, logger="lagmon")
    down = [KafkaUnavailable("kafka unreachable", kind="unreachable")] * 3
    loading = KafkaUnavailable("kafka did not answer", kind="timeout")  # a coordinator loading
    auth = KafkaUnavailable("SASL authentication failed", kind="auth")
    loop([*down, loading, 0, loading, 0, *down, loading, auth, 0], interval=10)
    errors = [
        r.getMessage() for r in caplog.records if r.name == f"lagmon.{STAGE}" and r.levelname == "ERROR"
    ]
    # one line for the first outage and its tail; a timeout alone is its own outage; a new
    # cause (auth) after the tail of an outage is logged
    assert [e.split(": ", 2)[1] for e in errors] == ["KafkaUnavailable"] * 4, errors
    assert ["unreachable" in e for e in errors] == [True, False, True, False], errors
    assert "did not answer" in errors[1] and "SASL" in errors[3], errors


def test_traceback_only_at_debug(caplog):
    caplog.set_level(logging.DEBUG, logger="lagmon")
    loop([ValueError("bad"), 0])
    tb = [r for r in caplog.records if r.exc_info]
    assert len(tb) == 1 and tb[0].levelno == logging.DEBUG
    err = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(err) == 1 and err[0].exc_info is None


def test_heartbeat_failure_is_logged_and_loop_continues(caplog):
    caplog.set_level(logging.INFO, logger="lagmon")
    store = FakeStore(fail=RuntimeError("database is locked"))
    code, starts, _, _ = loop([0, 0, KeyError("k"), 0], store=store)
    assert code == 0 and starts == [0, 10, 20, 21]
    warns = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warns == ["could not record heartbeat: RuntimeError: database is locked"]


# ----------------------------------------------------------------- once and Fatal


def test_once_success_and_failure():
    code, starts, waits, store = loop([0.2, 0.2], once=True)
    assert code == 0 and starts == [0] and waits == []
    assert [b["success"] for b in store.beats] == [True]
    code, starts, waits, store = loop([RuntimeError("nope"), 0], once=True)
    assert code == 1 and starts == [0] and waits == []
    assert store.beats[0]["success"] is False and store.beats[0]["error"] == "RuntimeError: nope"


def test_fatal_exits_with_its_code(caplog):
    code, starts, _waits, store = loop([0, Fatal("file is not a database", 3), 0, 0])
    assert code == 3 and starts == [0, 10]  # no retry, no further step
    assert "fatal: file is not a database (exit 3)" in caplog.text
    assert store.beats[-1]["success"] is False
    assert store.beats[-1]["error"] == "fatal: file is not a database"


def test_fatal_in_once_mode():
    code, starts, _, _ = loop([Fatal("bad config", 2), 0], once=True)
    assert code == 2 and starts == [0]


# ----------------------------------------------------------------- StopFlag


def test_stopflag_wait_wakes_on_set_from_other_thread():
    stop = StopFlag()
    threading.Timer(0.05, stop.set).start()
    t0 = time.monotonic()
    assert stop.wait(5) is True
    assert time.monotonic() - t0 < 2
    assert stop.wait(float("inf")) is True  # no OverflowError


def test_stopflag_second_signal_exits(monkeypatch):
    stop = StopFlag()
    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(runtime.os, "_exit", fake_exit)
    stop.handle(signal.SIGTERM)
    assert stop.is_set() and stop.signum == signal.SIGTERM and exits == []
    with pytest.raises(SystemExit):
        stop.handle(signal.SIGINT)
    assert exits == [128 + signal.SIGINT]


def test_stopflag_install_restore():
    before = signal.getsignal(signal.SIGTERM)
    stop = StopFlag()
    stop.install()
    assert signal.getsignal(signal.SIGTERM) == stop.handle
    stop.restore()
    assert signal.getsignal(signal.SIGTERM) == before


# ----------------------------------------------------------------- real signals

SIGNAL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from lagmon.stages import runtime
    runtime.setup_logging("sigtest", False)
    step_seconds, interval = float(sys.argv[1]), float(sys.argv[2])
    class Store:
        def heartbeat(self, *a, **k):
            pass
    def step(now):
        print("start", flush=True)
        time.sleep(step_seconds)
        print("end", flush=True)
    stop = runtime.StopFlag()
    stop.install()
    sys.exit(runtime.run_stage("sigtest", step, interval=interval, store=Store(),
                               once=False, stop=stop))
    """
)


def _spawn(step_seconds, interval):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(runtime.__file__))))
    return subprocess.Popen(
        [sys.executable, "-c", SIGNAL_SCRIPT, str(step_seconds), str(interval)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc, timeout=10):
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_step_finishes_step_then_exits_0(signum):
    proc = _spawn(0.5, 0.05)
    try:
        assert proc.stdout.readline() == "start\n"
        time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signum)
        out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, err
    assert out == "end\n"  # the running step finished, no new one started
    assert 0.2 < elapsed < 2.0
    assert f"lagmon.sigtest stopping on {signal.Signals(signum).name}" in err
    assert "Traceback" not in err


def test_sigterm_while_waiting_exits_at_once():
    proc = _spawn(0, 60)
    try:
        assert proc.stdout.readline() == "start\n"
        assert proc.stdout.readline() == "end\n"
        time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert time.monotonic() - t0 < 1.0


def test_second_sigterm_exits_immediately_with_143():
    proc = _spawn(5, 60)
    try:
        assert proc.stdout.readline() == "start\n"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143
    assert out == ""  # the 5 s step was abandoned
    assert time.monotonic() - t0 < 2.0
    assert "second signal 15, exiting now" in err


# ----------------------------------------------------------------- logging and args


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    if runtime._handler is not None:
        root.removeHandler(runtime._handler)
        runtime._handler = None
    root.setLevel(level)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)


def test_setup_logging_format_and_levels(capsys, restore_root_logging):
    log = setup_logging("sampler", False)
    assert log.name == "lagmon.sampler"
    log.debug("hidden")
    logging.getLogger("lagmon.kafka").info("hello %s", "world")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].endswith(" INFO lagmon.sampler hello world")
    setup_logging("sampler", True)  # replaces, does not duplicate, its handler
    log.debug("shown")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith(" DEBUG lagmon.sampler shown")


def test_parse_args():
    a = parse_args("sampler", ["--config", "c.yaml"])
    assert (a.config, a.debug, a.once) == ("c.yaml", False, False)
    a = parse_args("sampler", ["--config", "c.yaml", "--debug", "--once"])
    assert (a.debug, a.once) == (True, True)
    with pytest.raises(SystemExit) as e:
        parse_args("sampler", [])
    assert e.value.code == 2


# ----------------------------------------------------------------- stage_main (real config and store)

from lagmon.store import Store  # noqa: E402


def stage_rows(tmp_path):
    with Store(str(tmp_path / "state.db")) as st:
        return st.stage_states()


def test_stage_main_once_ok(tmp_path, capsys, restore_root_logging):
    cfg_path = str(
        write_config(tmp_path, "localhost:9092", fast=False, kafka={"ssl_ca_location": "/nonexistent/ca.pem"})
    )
    seen = {}

    def make_step(cfg, store, log):
        seen.update(cfg=cfg, store=store, log=log)
        return (lambda now: None), 5.0

    before = signal.getsignal(signal.SIGTERM)
    assert runtime.stage_main("reporter", make_step, ["--config", cfg_path, "--once"]) == 0
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    assert seen["cfg"].database.path == str(tmp_path / "state.db")
    assert seen["log"].name == "lagmon.reporter"
    err = capsys.readouterr().err
    assert "WARNING lagmon.reporter kafka.ssl_ca_location set but" in err
    row = stage_rows(tmp_path)["reporter"]
    assert row.pid == os.getpid() and row.interval == 5.0
    assert row.last_success is not None and row.last_error is None
    with pytest.raises(sqlite3.ProgrammingError):  # stage_main closed the store
        seen["store"].stage_states()


def test_stage_main_once_failure_is_1(tmp_path, restore_root_logging):
    def make_step(cfg, store, log):
        def step(now):
            raise RuntimeError("broker unreachable")

        return step, 5.0

    assert (
        runtime.stage_main(
            "sampler",
            make_step,
            ["--config", str(write_config(tmp_path, "localhost:9092", fast=False)), "--once"],
        )
        == 1
    )
    row = stage_rows(tmp_path)["sampler"]
    assert row.last_success is None and row.last_error == "RuntimeError: broker unreachable"


def test_stage_main_config_error_is_2(tmp_path, capsys, restore_root_logging):
    missing = str(tmp_path / "nope.yaml")
    assert runtime.stage_main("sampler", None, ["--config", missing]) == 2
    assert capsys.readouterr().err.splitlines() == [f"config error: {missing}: file not found"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: {}\nmonitoring:\n  sample_interval_seconds: 0\n")
    assert runtime.stage_main("sampler", None, ["--config", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(line.startswith("config error: ") for line in lines)
    assert not (tmp_path / "state.db").exists()


def test_stage_main_store_error_is_3(tmp_path, capsys, restore_root_logging):
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    assert (
        runtime.stage_main(
            "sampler", None, ["--config", str(write_config(tmp_path, "localhost:9092", fast=False))]
        )
        == 3
    )
    err = capsys.readouterr().err
    assert f"database error: database {tmp_path / 'state.db'}" in err


def test_stage_main_make_step_fatal_and_crash(tmp_path, restore_root_logging):
    def fatal(cfg, store, log):
        raise Fatal("output directory missing", 2)

    def crash(cfg, store, log):
        raise RuntimeError("boom")

    cfg_path = str(write_config(tmp_path, "localhost:9092", fast=False))
    assert runtime.stage_main("reporter", fatal, ["--config", cfg_path]) == 2
    assert runtime.stage_main("reporter", crash, ["--config", cfg_path]) == 1


MAIN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from lagmon.stages import runtime
    def make_step(cfg, store, log):
        def step(now):
            print("step", flush=True)
        return step, 30.0
    sys.exit(runtime.stage_main("reporter", make_step, sys.argv[1:]))
    """
)


def test_stage_main_process_sigterm_exits_0_and_records_heartbeat(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(runtime.__file__))))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MAIN_SCRIPT,
            "--config",
            str(write_config(tmp_path, "localhost:9092", fast=False)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout.readline() == "step\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _out, err = _finish(proc, timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "INFO lagmon.reporter started reporter" in err
    assert "INFO lagmon.reporter stopping on SIGTERM" in err
    row = stage_rows(tmp_path)["reporter"]
    assert row.pid == proc.pid and row.last_success is not None


# ----------------------------------------------------------------- printable


@pytest.mark.parametrize(
    "text, shown",
    [
        ("orders", "orders"),
        ("ünïcode ok", "ünïcode ok"),
        ("a\nb", "a\\nb"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("tab\there\r", "tab\\there\\r"),
        ('quote\'s "fine"', 'quote\'s "fine"'),
        ("\u2028sep", "\\u2028sep"),
    ],
)
def test_printable_escapes_only_non_printable_characters(text, shown):
    assert runtime.printable(text) == shown
    assert runtime.printable(text).isprintable()


def test_the_start_is_recorded_before_the_first_step_ends(tmp_path):
    """issue 11, item 13: the reporter can tell "starting" from "stale" during the first step."""
    seen = []
    with Store(str(tmp_path / "state.db")) as store:

        def step(now):
            row = store.stage_states().get("sampler")
            seen.append(row)

        assert run_stage("sampler", step, interval=5, store=store, once=True, stop=StopFlag()) == 0
        after = store.stage_states()["sampler"]
    assert seen[0] is not None and seen[0].pid == os.getpid()
    assert seen[0].last_success is None and seen[0].last_error is None
    assert after.last_success is not None and after.started_at == seen[0].started_at


def test_a_second_copy_of_a_stage_exits_4_naming_the_database_and_pid(tmp_path, capsys, restore_root_logging):
    from lagmon import instance

    cfg_path = str(write_config(tmp_path, "localhost:9092", fast=False))
    held = instance.hold(str(tmp_path / "state.db"), "sampler")
    try:
        assert runtime.stage_main("sampler", None, ["--config", cfg_path]) == 4
    finally:
        held.release()
    err = capsys.readouterr().err
    assert str(tmp_path / "state.db") in err and f"pid {os.getpid()}" in err
    assert not (tmp_path / "state.db").exists()  # refused before the database was opened


def test_a_stage_crashing_in_every_first_step_keeps_its_first_start(tmp_path):
    """A sampler restarted again and again before any step completes stays "starting" only for
    the window counted from its first start, then goes stale (issue 11, item 13)."""
    with Store(str(tmp_path / "state.db")) as store:
        store.stage_started("sampler", pid=1, started_at=1000.0, interval=5)
        store.stage_started("sampler", pid=2, started_at=1008.0, interval=5)  # crashed, restarted
        store.stage_started("sampler", pid=3, started_at=1016.0, interval=5)
        row = store.stage_states()["sampler"]
        assert (row.pid, row.started_at, row.heartbeat_at) == (3, 1000.0, 1016.0)
        store.stage_started("sampler", pid=4, started_at=5000.0, interval=5)  # long after: a new start
        assert store.stage_states()["sampler"].started_at == 5000.0
        store.heartbeat("sampler", pid=4, started_at=5000.0, at=5001.0, interval=5, success=True)
        store.stage_started("sampler", pid=5, started_at=5003.0, interval=5)  # after a sample: a new start
        assert store.stage_states()["sampler"].started_at == 5003.0

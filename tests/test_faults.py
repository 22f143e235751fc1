"""Fault tests: the real sampler and reporter processes while Kafka is unreachable, goes
away and comes back, or rejects the password.

These tests start and stop their OWN broker (scripts/kafka_broker.py on 127.0.0.1 ports
17092 plaintext, 17093 SASL_PLAINTEXT, 17094 controller, workdir ${TMPDIR:-/tmp}/
lagmon-faults-kafka-17092), because test 2 stops it mid-run and starts it again on the same
data (--keep-data); the shared session broker (19092..) and anyone else's are never touched.
Every wait is bounded.

What "logged once per outage" means here: the stage processes run with --debug, so repeats
at DEBUG are fine; the lines at INFO and above that mention the failure are counted.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from lagmon.kafka import KafkaUnavailable
from lagmon.stages.runtime import StopFlag, run_stage
from lagmon.store import Store
from testing.stages import REPO, StageProcess, write_config
from testing.traffic import LagConsumer, SteadyProducer, create_topic, read_report, unique, wait_for

BROKER_SCRIPT = REPO / "scripts" / "kafka_broker.py"
HOST = "127.0.0.1"
PORT, SASL_PORT, CONTROLLER_PORT = 17092, 17093, 17094
FIRST_START_TIMEOUT = 900.0  # a first run may fetch the broker jars with Maven
RESTART_TIMEOUT = 180.0
STOP_TIMEOUT = 120.0
OUTAGE = 15.0  # seconds the broker stays away in test 2

LOG_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) ?(.*)$"
)


# ----------------------------------------------------------------------------- helpers


class OwnBroker:
    """This module's broker, driven by scripts/kafka_broker.py with our ports and workdir."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.bootstrap = f"{HOST}:{PORT}"
        self.sasl_bootstrap = f"{HOST}:{SASL_PORT}"
        self.running = False

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            str(BROKER_SCRIPT),
            *args,
            "--port",
            str(PORT),
            "--sasl-port",
            str(SASL_PORT),
            "--controller-port",
            str(CONTROLLER_PORT),
            "--workdir",
            str(self.workdir),
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def start(self, *, keep_data: bool, timeout: float = RESTART_TIMEOUT) -> None:
        out = self._run("start", *(["--keep-data"] if keep_data else []), timeout=timeout)
        if out.returncode != 0:
            pytest.fail(
                f"could not start the fault-test broker on {self.bootstrap} "
                f"(exit {out.returncode}):\n{out.stderr.strip()}",
                pytrace=False,
            )
        self.running = True

    def stop(self, *, keep_data: bool) -> None:
        out = self._run("stop", *(["--keep-data"] if keep_data else []), timeout=STOP_TIMEOUT)
        assert out.returncode == 0, out.stderr
        self.running = False

    def ensure_running(self) -> None:
        if not self.running:
            self.start(keep_data=True)


@pytest.fixture(scope="module")
def own_broker():
    # A fixed workdir of our own, so that a broker left behind by an aborted run of this
    # module is stopped first (`stop` only ends a broker started from this workdir).
    broker = OwnBroker(Path(os.environ.get("TMPDIR") or "/tmp") / f"lagmon-faults-kafka-{PORT}")
    broker.stop(keep_data=False)
    broker.start(keep_data=False, timeout=FIRST_START_TIMEOUT)
    try:
        yield broker
    finally:
        broker.stop(keep_data=False)


def log_records(text: str) -> list[tuple[str, str]]:
    """(level, message) per log record; continuation lines (tracebacks) join their record,
    and output that is not a log record at all (e.g. librdkafka on stderr) has level RAW."""
    records: list[list[str]] = []
    for line in text.splitlines():
        m = LOG_RECORD.match(line)
        if m:
            records.append([m.group(1), m.group(3)])
        elif records and records[-1][0] != "RAW":
            records[-1][1] += "\n" + line
        elif line.strip():
            records.append(["RAW", line])
    return [(level, msg) for level, msg in records]


def loud(records, pattern: str) -> list[str]:
    """Messages at INFO or above (or raw output) matching pattern (case-insensitive).
    Patterns use word boundaries: the config path holds the test's name."""
    rx = re.compile(pattern, re.IGNORECASE)
    return [f"{lvl} {msg}" for lvl, msg in records if lvl != "DEBUG" and rx.search(msg)]


def closed_port() -> socket.socket:
    """A loopback socket bound but not listening: connecting to it is refused, and
    nobody else can take the port while the socket is held."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    return s


def stage_state(db: Path, stage: str):
    if not db.exists():  # let the stage create it
        return None
    with Store(str(db)) as store:
        return store.stage_states().get(stage)


from tests.helpers import entry, raw  # noqa: E402


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def sasl_config(directory: Path, password: str, timeout: float) -> Path:
    return write_config(
        directory,
        f"{HOST}:{SASL_PORT}",
        kafka={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "lagmon",
            "sasl_password": password,
            "request_timeout_seconds": timeout,
        },
    )


# ----------------------------------------------------------------------------- 1. unreachable at start


@pytest.mark.kafka
def test_unreachable_at_start_logs_once_and_keeps_running(tmp_path):
    sock = closed_port()
    try:
        bootstrap = f"{HOST}:{sock.getsockname()[1]}"
        cfg = write_config(tmp_path, bootstrap, kafka={"request_timeout_seconds": 2})
        sampler = StageProcess("sampler", cfg)
        try:
            time.sleep(10)
            assert sampler.proc.poll() is None, f"sampler exited {sampler.proc.returncode}:\n{sampler.log()}"
            state = stage_state(tmp_path / "state.db", "sampler")
            with Store(str(tmp_path / "state.db")) as store:
                heads, commits = store.latest_heads(), store.lag_inputs()
        finally:
            code = sampler.stop()
    finally:
        sock.close()
    text = sampler.log()
    assert code == 0, text
    records = log_records(text)

    failures = loud(records, r"\bunreachable\b|\bfail|\berror|\brefused\b|" + re.escape(bootstrap))
    assert len(failures) == 1, "want ONE loud line for the outage, got:\n" + "\n".join(failures)
    assert failures[0].startswith("ERROR") and bootstrap in failures[0], failures
    assert "unreachable" in failures[0], failures
    retries = [m for lvl, m in records if lvl == "DEBUG" and m.startswith("step failed again")]
    assert len(retries) >= 2, "the sampler did not keep retrying:\n" + text
    assert not [m for lvl, m in records if lvl == "RAW"], "output outside the log format:\n" + text

    assert heads == {} and commits == []
    assert state is not None and state.last_success is None
    assert state.last_error and bootstrap in state.last_error, state
    assert "stopping on SIGTERM" in text


# ----------------------------------------------------------------------------- 2. broker away and back


@pytest.mark.kafka
def test_broker_outage_and_recovery(own_broker, tmp_path):
    bootstrap = own_broker.bootstrap
    topic, group = unique("faults"), unique("faults-g")
    create_topic(bootstrap, topic, 2)
    cfg = write_config(tmp_path, bootstrap, kafka={"request_timeout_seconds": 3})
    db, report_path = tmp_path / "state.db", tmp_path / "lag.json"
    producer = SteadyProducer(bootstrap, topic, 2, rate=20)
    consumer = LagConsumer(bootstrap, group, topic)
    producer.start()
    consumer.start()
    sampler, reporter = StageProcess("sampler", cfg), StageProcess("reporter", cfg)
    pid = sampler.proc.pid
    reports = []
    try:
        wait_for(lambda: entry(read_report(report_path), group, topic), 60, what="group in lag.json")
        wait_for(lambda: not read_report(report_path)["monitor"]["stale"], 10, what="fresh lag.json")

        own_broker.stop(keep_data=True)
        down_at = time.time()  # the broker process is gone: nothing can answer from here
        while time.time() < down_at + OUTAGE:
            rep = read_report(report_path)
            reports.append((time.time(), rep["generated_at"], rep["monitor"]["stale"]))
            assert sampler.proc.poll() is None, f"sampler died during the outage:\n{sampler.log()}"
            time.sleep(0.5)
        up_at = time.time()
        own_broker.start(keep_data=True)
        started_at = time.time()

        # after recovery: fresh again, new head rows, the group sampled and reported again
        wait_for(lambda: not read_report(report_path)["monitor"]["stale"], 45, what="lag.json fresh again")
        wait_for(
            lambda: (
                raw(db, "SELECT count(*) FROM partition_offsets WHERE first_seen > ?", (started_at,))[0][0]
                >= 2
            ),
            30,
            what="new head rows after recovery",
        )
        wait_for(
            lambda: (
                raw(
                    db,
                    "SELECT count(*) FROM consumer_commits WHERE group_id = ? AND last_seen > ?",
                    (group, started_at),
                )[0][0]
                >= 1
            ),
            30,
            what="the group's commits sampled after recovery",
        )

        def reported_again():
            rep = read_report(report_path)
            e = entry(rep, group, topic)
            return (
                e if e and epoch(rep["generated_at"]) > started_at and not rep["monitor"]["stale"] else None
            )

        again = wait_for(reported_again, 15, what="the group reported after recovery")
        assert sampler.proc.poll() is None and sampler.proc.pid == pid, sampler.log()
    finally:
        own_broker.ensure_running()
        consumer.stop()
        producer.stop()
        sampler_code, reporter_code = sampler.stop(), reporter.stop()
    assert sampler_code == 0 and reporter_code == 0, (sampler_code, reporter_code)
    assert again["lag_seconds"] >= 0 and again["status"] in ("online", "recovering", "offline")

    # no observation dated inside the outage (a sample in flight at the stop is stamped before it)
    invented = raw(
        db,
        "SELECT 'head', topic, partition, offset, first_seen, last_seen FROM partition_offsets "
        "WHERE (first_seen > ? AND first_seen < ?) OR (last_seen > ? AND last_seen < ?) "
        "UNION ALL SELECT 'commit', topic, partition, committed_offset, first_seen, last_seen "
        "FROM consumer_commits WHERE (first_seen > ? AND first_seen < ?) "
        "OR (last_seen > ? AND last_seen < ?)",
        (down_at, up_at) * 4,
    )
    assert invented == [], f"rows observed while the broker was down ({down_at:.2f}..{up_at:.2f}): {invented}"

    # the reporter kept rewriting lag.json, which went stale during the outage
    written = {g for _t, g, _s in reports}
    assert len(written) >= OUTAGE / 3, f"lag.json rewritten only {len(written)} times in {OUTAGE:.0f} s"
    assert any(stale for _t, _g, stale in reports), reports
    assert not reports[0][2], "lag.json was stale already when the broker went down"

    records = log_records(sampler.log())
    errors = [f"{lvl} {m}" for lvl, m in records if lvl in ("ERROR", "CRITICAL")]
    recovered = loud(records, r"^recovered")
    failures = [
        m
        for m in loud(records, r"\bunreachable\b|\bfail|\brefused\b|" + re.escape(bootstrap))
        if m not in recovered
    ]
    assert len(errors) == 1 and bootstrap in errors[0], "want ONE error line for the outage:\n" + "\n".join(
        errors
    )
    assert len(failures) == 1, "want ONE loud line for the outage:\n" + "\n".join(failures)
    assert len(recovered) == 1 and recovered[0].startswith("INFO"), recovered
    assert not [m for lvl, m in records if lvl == "RAW"], sampler.log()


# ----------------------------------------------------------------------------- 3. wrong SASL password


@pytest.mark.kafka
def test_wrong_sasl_password(own_broker, tmp_path):
    own_broker.ensure_running()
    password = unique("wr0ngpass")
    timeout = 5.0
    cfg = sasl_config(tmp_path / "once", password, timeout)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "processes.sampler", "--config", str(cfg), "--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    output = out.stdout + out.stderr
    assert out.returncode != 0, output
    assert elapsed < timeout + 5, f"took {elapsed:.1f} s:\n{output}"
    for needed in (f"{HOST}:{SASL_PORT}", "SASL_PLAINTEXT", "PLAIN", "authentication failed"):
        assert needed in output, f"{needed!r} missing from:\n{output}"
    assert password not in output

    # long-running: keeps running, one loud line, heartbeat names authentication
    directory = tmp_path / "run"
    cfg = sasl_config(directory, password, timeout)
    sampler = StageProcess("sampler", cfg)
    try:
        wait_for(
            lambda: (st := stage_state(directory / "state.db", "sampler")) and st.last_error,
            20,
            what="sampler heartbeat with an error",
        )
        time.sleep(6)
        assert sampler.proc.poll() is None, sampler.log()
        state = stage_state(directory / "state.db", "sampler")
        with Store(str(directory / "state.db")) as store:
            heads = store.latest_heads()
    finally:
        code = sampler.stop()
    text = sampler.log()
    assert code == 0, text
    assert password not in text  # not even at DEBUG (librdkafka's own lines included)
    records = log_records(text)
    failures = loud(records, r"\bauth|\bfail|\berror|" + re.escape(f"{HOST}:{SASL_PORT}"))
    assert len(failures) == 1, "want ONE loud line for the auth failure:\n" + "\n".join(failures)
    assert "authentication failed" in failures[0] and "SASL_PLAINTEXT" in failures[0], failures
    retries = [m for lvl, m in records if lvl == "DEBUG" and m.startswith("step failed again")]
    assert len(retries) >= 2, "the sampler did not keep retrying:\n" + text
    assert state.last_error and "authentication" in state.last_error, state
    assert password not in state.last_error
    assert heads == {}


# ----------------------------------------------------------------------------- the outage rule itself


class _NoStore:
    def heartbeat(self, *args, **kwargs) -> None:
        pass


def test_kafka_outage_logged_once_per_kind_whatever_the_request(caplog):
    """What the tests above rely on, without a broker: KafkaUnavailable's text names the
    request that failed (it changes between retries); its kind decides the outage."""
    caplog.set_level(logging.DEBUG, logger="lagmon")
    unreachable = [
        KafkaUnavailable(f"kafka unreachable at h:1 while {what}", kind="unreachable")
        for what in ("listing topics", "fetching committed offsets of 1 group(s)", "listing topics")
    ]
    auth = [KafkaUnavailable("kafka authentication failed at h:1", kind="auth")] * 2
    script = [*unreachable, *auth, 0.0, unreachable[1], 0.0]
    stop = StopFlag()

    def step(now):
        if not script:
            stop.set()
            return 0.0
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert run_stage("sampler", step, interval=0.01, store=_NoStore(), once=False, stop=stop) == 0
    loud_lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    errors = [m for lvl, m in loud_lines if lvl == "ERROR"]
    assert len(errors) == 3, loud_lines  # unreachable, then auth; after a success, a new outage
    assert "listing topics" in errors[0] and "authentication" in errors[1] and "committed" in errors[2]
    assert [m for _l, m in loud_lines if m.startswith("recovered")] == [
        "recovered: step succeeded after 5 failed attempt(s)",
        "recovered: step succeeded after 1 failed attempt(s)",
    ]

"""A sample has one deadline (lagmon.stages.listing.sample_budget): every Kafka call of a
sample ends by it, so a SIGTERM during an outage stops the sampler well within supervisord's
stopwaitsecs. The broker here is a black hole made in the test: a loopback socket that accepts
connections and never answers (the worst outage: no refusal, no reset, only silence)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from lagmon.config import KafkaSettings
from lagmon.kafka import IsolatedKafkaClient, KafkaClient, KafkaUnavailable
from lagmon.stages.listing import sample_budget
from lagmon.supervisor import STOPWAITSECS
from testing.stages import REPO, StageProcess, write_config

SLACK = 2.0  # a call may end this much after its deadline (polling, a busy 2-core machine)


@pytest.fixture
def black_hole():
    """host:port of a listening socket that accepts and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)  # kept open, never read, never written

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def timed(call):
    started = time.monotonic()
    try:
        call()
    except KafkaUnavailable:
        pass
    return time.monotonic() - started


def test_every_client_call_ends_at_the_deadline_not_at_the_request_timeout(black_hole):
    k = KafkaSettings(bootstrap_servers=black_hole, request_timeout_seconds=10)
    with IsolatedKafkaClient(k) as client:
        calls = {
            "topics": lambda d: client.topics(deadline=d),
            "groups": lambda d: client.groups(deadline=d),
            "committed (isolated)": lambda d: client.committed(["g"], deadline=d),
            "heads": lambda d: client.heads([("t", 0)], deadline=d),
            "message_times": lambda d: client.message_times([("t", 0, 0)], budget=10, deadline=d),
        }
        took = {name: timed(lambda c=call: c(time.monotonic() + 1.0)) for name, call in calls.items()}
    assert all(t < 1.0 + SLACK for t in took.values()), took
    with KafkaClient(k) as plain:
        assert timed(lambda: plain.committed(["g"], deadline=time.monotonic() + 1.0)) < 1.0 + SLACK


def test_one_sample_against_a_black_hole_ends_within_its_deadline(tmp_path, black_hole):
    config = write_config(tmp_path, black_hole, kafka={"request_timeout_seconds": 10})
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "processes.sampler", "--config", str(config), "--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert out.returncode == 1, out.stdout + out.stderr
    # the interpreter's start and the shutdown are outside the sample's deadline
    assert took < sample_budget(10) + 5.0, f"took {took:.1f} s:\n{out.stderr}"


def test_sigterm_during_a_sample_stops_the_sampler_well_within_stopwaitsecs(tmp_path, black_hole):
    # A request timeout of 30 s alone would outlast stopwaitsecs (30 s); the sample's deadline
    # (capped at STOPWAITSECS / 2) does not.
    config = write_config(tmp_path, black_hole, kafka={"request_timeout_seconds": 30})
    stage = StageProcess("sampler", config)
    try:
        bound = time.monotonic() + 60
        while "started sampler" not in stage.log() and time.monotonic() < bound:
            assert stage.proc.poll() is None, stage.log()
            time.sleep(0.05)
        assert "started sampler" in stage.log()
        # mid-sample: the topic listing is waiting on the black hole
        stage.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = stage.proc.wait(STOPWAITSECS + 30)
        took = time.monotonic() - sent
    finally:
        stage.stop(5)
    assert code == 0, stage.log()
    assert took < STOPWAITSECS - 10, f"stopped {took:.1f} s after SIGTERM:\n{stage.log()}"
    assert "stopping on SIGTERM" in stage.log()

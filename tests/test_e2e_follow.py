"""End to end against the real broker (issue 12): the report follows the sample, and the
first sample that sees a change shows it.

lagmon samples every 5 s and reports every 5 s (so a report on its own timer, or a lag held
until the next sample, would be seconds off). Two groups:

* stopped: consumes a steady stream, then stops. From the first sample that reads its commit
  unchanged the lag grows;
* burst: caught up on an idle topic, stops consuming, then a burst passes it. The first
  sample after the burst dates it by the first message's own timestamp and lets it grow.

For each, the first lag.json written after that sample landed (the sampler's last_success
in the database) must appear within FOLLOW seconds of it, say the lag holds at the report
(calculated_at not before the sample), and be within 2 s of the truth (the age of the
message at the committed offset, read from Kafka) when it is read.
"""

from __future__ import annotations

import calendar
import sqlite3
import time
from contextlib import closing

import pytest
from confluent_kafka import Producer

from bench.accuracy import only_prefix
from lagmon.timelag import round_seconds
from testing.stages import StageProcess, write_config
from testing.traffic import LagConsumer, SteadyProducer, Truth, create_topic, read_report, unique, wait_for
from tests.helpers import entry

pytestmark = pytest.mark.kafka

SAMPLE = REPORT = 5.0
FOLLOW = 1.5  # the reporter polls every 0.25 s; a report takes well under a second
TRUTH_TOLERANCE = 2.0


def landed(db: str) -> float | None:
    """The sampler's last successful step (wall time), read-only."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT last_success FROM stage_state WHERE stage = 'sampler'").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else row[0]


def next_landing(db: str, after: float, timeout: float = 3 * SAMPLE) -> float:
    return wait_for(
        lambda: (t := landed(db)) is not None and t > after and t, timeout, interval=0.05, what="a sample"
    )


def first_report_after(path, at: float, timeout: float = REPORT + 5) -> tuple[float, dict]:
    """(when it was seen, the report) of the first lag.json written after `at`."""

    def written():
        try:
            if path.stat().st_mtime > at:
                rep = read_report(path)
                return rep and (time.time(), rep)
        except FileNotFoundError:
            return None
        return None

    return wait_for(written, timeout, interval=0.05, what=f"a report after {at:.2f}")


def check(path, db, truth, group, topic, sample_at, what):
    seen_at, rep = first_report_after(path, sample_at)
    e = entry(rep, group, topic)
    true_lag = truth.lag(group, topic)
    assert e is not None, f"{what}: {group} missing from {rep}"
    assert seen_at - sample_at <= FOLLOW, f"{what}: report {seen_at - sample_at:.2f} s after the sample"
    calculated = calendar.timegm(time.strptime(e["calculated_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert calculated >= int(sample_at), f"{what}: lag held at {e['calculated_at']}, before the sample"
    assert abs(e["lag_seconds"] - true_lag) <= TRUTH_TOLERANCE, (
        f"{what}: reported {e['lag_seconds']} s, true {true_lag:.2f} s"
    )
    exact = e["lag_seconds_exact"]
    assert round_seconds(exact) == e["lag_seconds"], f"{what}: {exact} does not round to {e['lag_seconds']}"
    assert abs(exact - true_lag) <= TRUTH_TOLERANCE, f"{what}: exact {exact} s, true {true_lag:.2f} s"
    return e["lag_seconds"], true_lag


def test_first_report_after_the_first_sample_that_saw_the_change(kafka_bootstrap, tmp_path):
    tag = unique("follow")
    stopped_topic, burst_topic = f"{tag}-steady", f"{tag}-idle"
    stopped_group, burst_group = f"{tag}-stopper", f"{tag}-sleeper"
    create_topic(kafka_bootstrap, stopped_topic, 2)
    create_topic(kafka_bootstrap, burst_topic, 1)
    cfg = write_config(
        tmp_path,
        kafka_bootstrap,
        monitoring={
            "sample_interval_seconds": SAMPLE,
            "offline_sample_interval_seconds": 2 * SAMPLE,
            "report_interval_seconds": REPORT,
        },
        exclude={"topics": only_prefix(tag), "groups": only_prefix(tag)},
    )
    db, report_path = str(tmp_path / "state.db"), tmp_path / "lag.json"
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    for _ in range(5):  # something for the sleeper to catch up on
        producer.produce(burst_topic, b"x" * 32, partition=0)
    producer.flush(10)
    steady = SteadyProducer(kafka_bootstrap, stopped_topic, 2, rate=20)
    stopper = LagConsumer(kafka_bootstrap, stopped_group, stopped_topic)
    sleeper = LagConsumer(kafka_bootstrap, burst_group, burst_topic)
    for t in (steady, stopper, sleeper):
        t.start()
    truth = Truth(kafka_bootstrap)
    stages = [StageProcess("sampler", cfg), StageProcess("reporter", cfg)]
    try:
        wait_for(
            lambda: (
                entry(read_report(report_path), stopped_group, stopped_topic)
                and entry(read_report(report_path), burst_group, burst_topic)
            ),
            60,
            what="both groups in lag.json",
        )
        wait_for(
            lambda: sleeper.processed >= 5 and truth.lag(burst_group, burst_topic) == 0, 30, what="caught up"
        )
        sleeper.stop()
        sleeper.join(15)
        time.sleep(0.5)  # its final commit is in (the consumer commits on close)
        # --- stopped: its commit stops moving; the first sample after the next one reads it static
        stopper.stop()
        stopper.join(15)
        stopped_at = time.time()
        first = next_landing(db, stopped_at + 0.3)  # reads the final commit (may have moved)
        second = next_landing(db, first)  # reads it unchanged: the first static sample
        stopped = check(report_path, db, truth, stopped_group, stopped_topic, second, "stopped")
        # --- burst past the caught-up sleeper, after at least two idle samples
        next_landing(db, next_landing(db, time.time()))
        for _ in range(200):
            producer.produce(burst_topic, b"b" * 32, partition=0)
        producer.flush(10)
        burst_at = time.time()
        seen = next_landing(db, burst_at + 0.3)  # the first sample whose reads came after the burst
        burst = check(report_path, db, truth, burst_group, burst_topic, seen, "burst")
        print(f"stopped (reported, true): {stopped}; burst: {burst}")
    finally:
        for t in (steady, stopper, sleeper):
            t.stop()
        codes = [s.stop() for s in stages]
        truth.close()
    assert codes == [0, 0], [s.log()[-3000:] for s in stages]

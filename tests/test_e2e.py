"""End to end against the real broker: real producers and consumers, the real sampler
and reporter processes, and lag.json checked against the messages' own timestamps.

How a report is judged. The truth (the age of the message at each committed
offset, read from Kafka) is recorded every 0.2 s in the background. A lag.json read
at time R may describe the cluster as it was up to REPORT + interval + COMMIT
seconds earlier: one report interval, the group's sampling interval (SAMPLE when
its data_resolution is fine, OFFLINE_SAMPLE when coarse), and the consumers'
commit interval. Within that window the truth itself can jump, e.g. when a
lagging consumer catches up after a burst. So each reported lag must lie within
TOLERANCE of the truth's range over [R - staleness, R], and above it by at most
TOLERANCE + the group's interval: a commit seen static at the last sample is
extrapolated to now (so a stopped group's lag grows instead of freezing between
samples), which over-reports a consumer that moved since, until the next sample. TOLERANCE: the head
history has a point every SAMPLE seconds, so interpolation is off by at most one
bracket (SAMPLE), plus 0.5 for rounding to an int, plus 0.5 for the recorder's
period and scheduling jitter on 2 cores: 2 s.
"""

from __future__ import annotations

import statistics
import threading
import time
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from testing.stages import StageProcess, write_config
from testing.traffic import (
    LagConsumer,
    SteadyProducer,
    Truth,
    TruthRecorder,
    create_topic,
    read_report,
    unique,
    wait_for,
)

pytestmark = pytest.mark.kafka

SAMPLE, OFFLINE_SAMPLE, REPORT, COMMIT = 1.0, 2.0, 1.0, 0.5
TOLERANCE = SAMPLE + 0.5 + 0.5


class BurstyProducer(threading.Thread):
    """Idle for `idle` seconds, then `burst` messages at once, repeatedly."""

    def __init__(self, bootstrap, topic, partitions, idle=6.0, burst=60):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic, self.partitions, self.idle, self.burst = topic, partitions, idle, burst
        self.stop_event = threading.Event()

    def run(self):
        n = 0
        while not self.stop_event.wait(self.idle):
            for _ in range(self.burst):
                self.producer.produce(self.topic, b"b" * 64, partition=n % self.partitions)
                n += 1
            self.producer.flush(10)

    def stop(self):
        self.stop_event.set()
        self.join(15)


from tests.helpers import entry  # noqa: E402


def test_lag_json_matches_message_timestamps(kafka_bootstrap, tmp_path):
    steady, bursty, secret = unique("steady"), unique("bursty"), unique("secret")
    create_topic(kafka_bootstrap, steady, 3)
    create_topic(kafka_bootstrap, bursty, 2)
    create_topic(kafka_bootstrap, secret, 1)
    tag = unique("g")
    keeper, laggard, stopper = f"{tag}-keeper", f"{tag}-laggard", f"{tag}-stopper"
    burst_keeper, burst_laggard = f"{tag}-burst-keeper", f"{tag}-burst-laggard"
    legacy, secret_reader = f"legacy-{tag}", f"{tag}-secret-reader"
    cfg = write_config(
        tmp_path,
        kafka_bootstrap,
        exclude={"topics": ["secret-*"], "groups": ["legacy-*"]},
    )
    report_path = tmp_path / "lag.json"
    threads = [
        SteadyProducer(kafka_bootstrap, steady, 3, rate=30),
        SteadyProducer(kafka_bootstrap, secret, 1, rate=5),
        BurstyProducer(kafka_bootstrap, bursty, 2),
    ]
    consumers = {
        keeper: LagConsumer(kafka_bootstrap, keeper, steady),
        laggard: LagConsumer(kafka_bootstrap, laggard, steady, delay=15),
        stopper: LagConsumer(kafka_bootstrap, stopper, steady),
        burst_keeper: LagConsumer(kafka_bootstrap, burst_keeper, bursty),
        burst_laggard: LagConsumer(kafka_bootstrap, burst_laggard, bursty, delay=4),
        legacy: LagConsumer(kafka_bootstrap, legacy, steady),
        secret_reader: LagConsumer(kafka_bootstrap, secret_reader, secret),
    }
    for t in threads + list(consumers.values()):
        t.start()
    stages = [StageProcess("sampler", cfg), StageProcess("reporter", cfg)]
    pairs = [
        (keeper, steady),
        (laggard, steady),
        (stopper, steady),
        (burst_keeper, bursty),
        (burst_laggard, bursty),
    ]
    truth = TruthRecorder(kafka_bootstrap, pairs)
    truth.start()
    seen_reports = []

    def error(rep_read_at, e, pair):
        interval = SAMPLE if e["data_resolution"] == "fine" else OFFLINE_SAMPLE
        staleness = REPORT + interval + COMMIT
        rng = truth.window(pair, rep_read_at - staleness, rep_read_at)
        assert rng is not None, f"no truth recorded for {pair}"
        below, above = rng[0] - e["lag_seconds"], e["lag_seconds"] - rng[1]
        # normalised so that <= TOLERANCE passes on both sides
        return max(0.0, below, above - interval)

    def snapshot():
        rep = read_report(report_path)
        if rep is not None:
            seen_reports.append(rep)
        return rep

    try:
        # Warm up: the laggard needs its delay's worth of history before it settles.
        wait_for(lambda: entry(snapshot(), laggard, steady), 60, what="laggard in lag.json")
        time.sleep(18)

        # Phase 1: accuracy, every pattern, 15 comparisons one second apart.
        errors: dict[str, list[float]] = {}
        for _ in range(15):
            rep, read_at = snapshot(), time.time()
            for group, topic in pairs:
                e = entry(rep, group, topic)
                assert e is not None, f"{group} missing from lag.json"
                errors.setdefault(group, []).append(error(read_at, e, (group, topic)))
            time.sleep(1)
        summary = {g: (round(statistics.median(v), 2), round(max(v), 2)) for g, v in errors.items()}
        for group, errs in errors.items():
            assert max(errs) <= TOLERANCE, f"{group}: errors {errs}, all (median, max): {summary}"
        lag_now = entry(snapshot(), laggard, steady)["lag_seconds"]
        assert 15 - TOLERANCE <= lag_now <= 15 + TOLERANCE, lag_now

        # Phase 2: the stopped group becomes offline/coarse and its lag keeps growing, truly.
        consumers[stopper].stop()
        off = wait_for(
            lambda: (e := entry(snapshot(), stopper, steady)) and e["status"] == "offline" and e,
            30,
            what="stopper offline",
        )
        assert off["data_resolution"] == "coarse"
        wait_for(
            lambda: entry(snapshot(), stopper, steady)["lag_seconds"] >= 12, 30, what="stopper lag >= 12s"
        )
        e = entry(snapshot(), stopper, steady)
        assert error(time.time(), e, (stopper, steady)) <= TOLERANCE
        assert e["worst_partition"] in (0, 1, 2)

        # Phase 3: it resumes and drains (60 msg/s against 30 produced): offline -> recovering -> online.
        consumers[stopper] = LagConsumer(kafka_bootstrap, stopper, steady, max_rate=60)
        consumers[stopper].start()
        statuses = []

        def online_again():
            e = entry(snapshot(), stopper, steady)
            if e and (not statuses or statuses[-1] != e["status"]):
                statuses.append(e["status"])
            return e is not None and e["status"] == "online"

        wait_for(online_again, 90, interval=0.2, what="stopper back online")
        assert statuses[0] == "offline" and "recovering" in statuses and statuses[-1] == "online", statuses
        assert statuses.index("recovering") < len(statuses) - 1

        # Excluded groups and topics never appeared in any report.
        for rep in seen_reports:
            for c in rep["consumers"]:
                assert not c["group_id"].startswith("legacy-"), c
                assert not c["topic"].startswith("secret-"), c
        final = snapshot()
        assert entry(final, secret_reader, secret) is None
        assert final["monitor"]["stale"] is False
    finally:
        for t in list(consumers.values()) + threads:
            t.stop()
        codes = [s.stop() for s in stages]
        truth.stop()
    assert codes == [0, 0], [s.log()[-3000:] for s in stages]


def test_sampler_monitors_through_sasl_listener(kafka_bootstrap, kafka_sasl_bootstrap, tmp_path, monkeypatch):
    topic, group = unique("sasl"), unique("sasl-group")
    create_topic(kafka_bootstrap, topic, 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    ten_minutes_ago_ms = int((time.time() - 600) * 1000)
    for i in range(40):  # produced now, stamped ten minutes ago (+1 s per message)
        producer.produce(topic, b"m", partition=i % 2, timestamp=ten_minutes_ago_ms + 1000 * i)
    producer.flush(10)
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 20)])]
    )[group].result(10)
    env = {"LAGMON_TEST_SASL_PASSWORD": "lagmon-secret"}
    cfg = write_config(
        tmp_path,
        kafka_sasl_bootstrap,
        kafka={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "lagmon",
            "sasl_password": "${LAGMON_TEST_SASL_PASSWORD}",
        },
    )
    for stage in ("sampler", "reporter"):
        s = StageProcess(stage, cfg, extra=["--once"], env=env)
        s.proc.wait(60)
        assert s.stop() == 0, s.log()
        assert "lagmon-secret" not in s.log()
    rep = read_report(tmp_path / "lag.json")
    e = entry(rep, group, topic)
    assert e is not None, rep
    assert e["partitions_monitored"] == 2  # both have commits; partition 1 is caught up (20 == head)
    assert e["worst_partition"] == 0
    truth = Truth(kafka_bootstrap)
    try:
        # The commit (offset 5) is below lagmon's first head snapshot: the sampler anchors it on
        # the message's own timestamp, so the lag is exact, not a lower bound.
        # judged at the report's own calculated_at (whole seconds: +1 s of precision)
        at = datetime.strptime(e["calculated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        assert abs(e["lag_seconds"] - truth.lag(group, topic, now=at)) <= TOLERANCE + 1
        assert e["lag_seconds"] >= 500 and e["lag_lower_bound"] is False
    finally:
        truth.close()

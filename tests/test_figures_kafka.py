"""The new figures against the real broker: log start offsets beside the heads, messages lost
to retention, a real consumer draining a backlog (catch_up_seconds in lag.json against the
time it actually took), and the Prometheus file of the real sampler and reporter processes
read through a real node_exporter and a real Prometheus.

Intervals (testing.stages.FAST_MONITORING): sample 1 s, report 1 s; Prometheus scrapes 1 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import AdminClient

from lagmon.kafka import KafkaClient
from lagmon.prometheus import escape_label_value
from lagmon.stages.sampler import Sampler
from lagmon.store import Store
from testing.stages import StageProcess, config_dict
from testing.traffic import (
    LagConsumer,
    SteadyProducer,
    Truth,
    create_topic,
    entry,
    read_report,
    unique,
    wait_for,
)
from tests.helpers import make_config
from tests.test_kafka_client import WAIT, produce, settings

pytestmark = pytest.mark.kafka

SAMPLE = 1.0


def stage_config(directory: Path, bootstrap: str, **output) -> Path:
    cfg = config_dict(directory, bootstrap)
    cfg["output"].update(output)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_log_starts_beside_the_heads_and_messages_lost(kafka_bootstrap, make_topic, tmp_path):
    from confluent_kafka import TopicPartition

    topic = make_topic(2)
    produce(kafka_bootstrap, topic, {0: 8, 1: 3})
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 5)], request_timeout=WAIT).values():
        assert future.result(timeout=WAIT).low_watermark == 5
    group = unique("lost")
    from tests.test_kafka_client import commit_offsets

    commit_offsets(kafka_bootstrap, {group: [(topic, 0, 2), (topic, 1, 1)]})
    with KafkaClient(settings(kafka_bootstrap)) as client:
        before = client.requests
        heads, starts = client.heads_and_log_starts([(topic, 0), (topic, 1), (f"missing-{topic}", 0)])
        assert client.requests - before == 2  # one batched ListOffsets each, both in flight
    assert heads == {(topic, 0): 8, (topic, 1): 3}
    assert starts == {(topic, 0): 5, (topic, 1): 0}

    cfg = make_config(tmp_path, kafka_bootstrap)
    with Store(cfg.database.path) as store, KafkaClient(cfg.kafka) as client:
        sampler = Sampler(cfg, store, client)
        deadline = time.monotonic() + 30
        while (group, topic) not in store.group_figures() and time.monotonic() < deadline:
            sampler.step(time.time())  # the group may take a moment to be listed
        f = store.group_figures()[(group, topic)]
    assert (f.offset_lag, f.messages_lost) == ((8 - 2) + (3 - 1), 5 - 2)


def test_catch_up_seconds_of_a_consumer_draining_a_backlog(kafka_bootstrap, tmp_path):
    """5 msg/s in; the group reads 1 msg/s until its lag is 20 s, then 10 msg/s: its time lag
    falls by about 1 s per second until it is caught up (low rates: the 2 shared cores keep up). Every catch-up
    estimate lag.json gives once the trend holds only drain samples (TREND_POINTS after the
    switch) must put the catch-up within max(5 s, 40%) of when it really happened."""
    topic, group = unique("drain"), unique("drainer")
    create_topic(kafka_bootstrap, topic, 1)
    config = stage_config(tmp_path, kafka_bootstrap)
    producer = SteadyProducer(kafka_bootstrap, topic, 1, rate=5)
    consumer = LagConsumer(kafka_bootstrap, group, topic, max_rate=1)
    stages = [StageProcess("sampler", config), StageProcess("reporter", config)]
    truth = Truth(kafka_bootstrap)
    try:
        producer.start()
        consumer.start()
        report_path = tmp_path / "lag.json"
        wait_for(
            lambda: (entry(read_report(report_path), group, topic) or {}).get("lag_seconds", 0) >= 20,
            90,
            what="a backlog of 20 s",
        )
        consumer.max_rate = 10
        processed = consumer.processed
        switched = time.time()
        readings = []  # (read at, catch_up_seconds, lag_seconds)
        caught = None
        deadline = time.monotonic() + 120
        while caught is None and time.monotonic() < deadline:
            e = entry(read_report(report_path), group, topic)
            now = time.time()
            if e is not None:
                readings.append((now, e.get("catch_up_seconds"), e["lag_seconds"]))
            if truth.lag(group, topic, now) <= 1.0:
                caught = now
            time.sleep(0.25)
        rate = (consumer.processed - processed) / (time.time() - switched)
        assert caught is not None, (f"consumed {rate:.1f} msg/s, produced {producer.sent}", readings[-5:])
    finally:
        consumer.stop()
        producer.stop()
        truth.close()
        logs = {s.stage: (s.stop(), s.log()) for s in stages}
    assert all(code == 0 for code, _log in logs.values()), logs
    drain = caught - switched
    judged = [(at, est) for at, est, lag in readings if at >= switched + 11 and at <= caught - 2 and lag > 0]
    print(
        f"drain took {drain:.1f} s; estimates (s before the catch-up, estimate):",
        [(round(caught - at, 1), est) for at, est in judged],
    )
    assert drain >= 14 and len(judged) >= 4, (drain, readings)
    for at, estimate in judged:
        remaining = caught - at
        assert estimate is not None, (remaining, readings)
        assert abs(estimate - remaining) <= max(5.0, 0.4 * remaining), (remaining, estimate, readings)


@pytest.fixture(scope="module")
def prometheus_tools():
    from testing.prometheus import PrometheusToolError, ensure_installed

    try:
        return ensure_installed()
    except PrometheusToolError as exc:
        pytest.fail(f"the Prometheus tools are needed and could not be installed: {exc}", pytrace=False)


@pytest.mark.prometheus
def test_real_stages_through_node_exporter_and_prometheus(kafka_bootstrap, tmp_path, prometheus_tools):
    """The real sampler and reporter write lagmon.prom into node_exporter's textfile directory;
    Prometheus scrapes it: its lagmon_consumer_lag_seconds of a lagging group matches lag.json
    within a sample interval,
    and `promtool check metrics` passes on the real file."""
    from testing.prometheus import NodeExporter, Prometheus, promtool

    topic, group = unique("prom"), unique('lag"ging\\')
    create_topic(kafka_bootstrap, topic, 2)
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    prom_path = textfiles / "lagmon.prom"
    config = stage_config(
        tmp_path, kafka_bootstrap, prometheus_path=str(prom_path), prometheus_partitions=True
    )
    producer = SteadyProducer(kafka_bootstrap, topic, 2, rate=20)
    consumer = LagConsumer(kafka_bootstrap, group, topic, delay=8.0)  # ~8 s behind, steadily
    stages = [StageProcess("sampler", config), StageProcess("reporter", config)]
    selector = f'lagmon_consumer_lag_seconds{{group_id="{escape_label_value(group)}"}}'
    compared = []
    try:
        producer.start()
        consumer.start()
        report_path = tmp_path / "lag.json"
        wait_for(
            lambda: (entry(read_report(report_path), group, topic) or {}).get("lag_seconds", 0) >= 5,
            90,
            what="a lag of 5 s in lag.json",
        )
        with NodeExporter(textfiles) as exporter, Prometheus([exporter.target]) as prom:
            prom.wait_for(selector, timeout=60)
            for _ in range(5):
                before = entry(read_report(report_path), group, topic)
                (series,) = prom.wait_for(selector)
                after = entry(read_report(report_path), group, topic)
                assert before is not None and after is not None
                value = float(series["value"][1])
                compared.append((before["lag_seconds"], value, after["lag_seconds"]))
                # the scrape read a file written between the two lag.json reads (or one report
                # earlier): within a sample interval of what they say
                low = min(before["lag_seconds"], after["lag_seconds"]) - SAMPLE
                high = max(before["lag_seconds"], after["lag_seconds"]) + SAMPLE
                assert low <= value <= high, compared
                assert series["metric"]["topic"] == topic
                time.sleep(1.0)
            assert "node_textfile_scrape_error 0" in exporter.metrics()
            parts = prom.wait_for(selector.replace("consumer_lag_seconds", "partition_offset_lag"))
            assert sorted(p["metric"]["partition"] for p in parts) == ["0", "1"]
            for family in ("lagmon_sampler_errors_total", "lagmon_sampler_last_sample_duration_seconds"):
                prom.wait_for(family)
            offset = prom.wait_for(selector.replace("lag_seconds", "offset_lag"))
            assert float(offset[0]["value"][1]) > 0
        checked = promtool("check", "metrics", stdin=prom_path.read_bytes())
        output = (checked.stdout + checked.stderr).decode("utf-8", "replace")
        assert checked.returncode == 0 and output.strip() == "", output
    finally:
        consumer.stop()
        producer.stop()
        logs = {s.stage: (s.stop(), s.log()) for s in stages}
    assert all(code == 0 for code, _log in logs.values()), logs
    print("lag.json before, Prometheus, lag.json after:", compared)

"""lagmon.figures (offset lag, messages lost to retention, catch-up time) and its wiring:
the sampler stores the figures (surviving a restart), the reporter adds them to lag.json and
writes the Prometheus file beside it, a .prom write failure never stops lag.json.

The real broker end to end: tests/test_figures_kafka.py."""

from __future__ import annotations

import dataclasses
import logging
import math
import os

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lagmon import figures, report
from lagmon.figures import GroupFigures, PartitionFigure
from lagmon.stages.figures_io import Instrumented, ReporterFigures
from lagmon.stages.reporter import Reporter
from lagmon.store import Store
from tests.helpers import make_config
from tests.test_sampling import MONITORING, ScriptedKafka, sampler_at

# ----------------------------------------------------------------------------- catch-up (pure)


def drain(p_rate: float, c_rate: float, start: float, interval: float, count: int):
    """A producer at p_rate msg/s since t=0 (message k appended at k / p_rate) and a consumer
    that starts at `start` and commits at c_rate msg/s: the exact time lag at each sample
    (committed offsets are whole numbers) and the true time the group catches up."""
    caught = c_rate * start / (c_rate - p_rate) if c_rate > p_rate else math.inf
    samples = []
    for k in range(1, count + 1):
        t = start + k * interval
        head = math.floor(p_rate * t) + 1
        committed = min(head, math.floor(c_rate * (t - start)))
        lag = 0.0 if committed >= head else max(0.0, t - committed / p_rate)
        samples.append((t, lag))
    return samples, caught


def trend_after(samples, max_age=math.inf):
    trend: tuple = ()
    for t, lag in samples:
        trend = figures.next_trend(trend, t, lag, max_age)
    return trend


@settings(max_examples=300, deadline=None)
@given(
    p_rate=st.floats(1, 2000),
    speedup=st.floats(1.1, 20),
    start=st.floats(30, 20_000),
    interval=st.floats(0.5, 120),
    count=st.integers(figures.MIN_TREND_POINTS, 40),
    report_after=st.floats(0, 1),
)
def test_catch_up_of_a_constant_rate_consumer_is_within_10_percent(
    p_rate, speedup, start, interval, count, report_after
):
    c_rate = p_rate * speedup
    samples, caught = drain(p_rate, c_rate, start, interval, count)
    now = samples[-1][0] + report_after * interval  # the reporter runs between samples
    remaining = caught - now
    # still lagging at the last sample (a lag under 0.5 s is 0: caught up), by enough
    # messages that whole offsets are not noise
    assume(samples[-1][1] >= 0.5 and remaining > 0)
    assume((c_rate - p_rate) * remaining >= 50 and (c_rate - p_rate) * interval * (count - 1) >= 50)
    trend = trend_after(samples)
    estimate = figures.catch_up_seconds(figures.catch_up_at(trend), samples[-1][1], now)
    assert estimate is not None
    assert abs(estimate - remaining) <= 0.1 * remaining, (estimate, remaining)


@given(
    st.lists(st.floats(0, 1e6), min_size=1, max_size=30),
    st.floats(0.1, 1000),
    st.floats(0, 1e9),
)
def test_no_catch_up_when_the_lag_is_not_shrinking(increments, interval, t0):
    lag, samples = 1.0, []
    for i, inc in enumerate(increments):  # a lag that never falls: flat or growing
        lag += inc
        samples.append((t0 + i * interval, lag))
    trend = trend_after(samples)
    assert figures.catch_up_at(trend) is None
    assert figures.catch_up_seconds(figures.catch_up_at(trend), lag, samples[-1][0]) is None


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(st.lists(st.tuples(finite, st.floats(0, 1e12)), max_size=30), finite, st.floats(0, 1e12))
def test_catch_up_is_never_negative_or_nan(points, now, lag):
    trend: tuple = ()
    for t, v in sorted(points):
        trend = figures.next_trend(trend, t, v, 1e9)
    at = figures.catch_up_at(trend)
    assert at is None or math.isfinite(at)
    seconds = figures.catch_up_seconds(at, lag, now)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= figures.MAX_SECONDS)


def test_catch_up_is_0_when_caught_up_and_a_new_episode_starts_a_new_trend():
    assert figures.catch_up_seconds(None, 0.2, 100.0) == 0.0
    trend = trend_after([(0, 50), (10, 40), (20, 30), (30, 0), (40, 20), (50, 25)])
    assert trend == ((40, 20), (50, 25))  # the falling lag before the catch-up is forgotten
    assert figures.catch_up_at(trend) is None


def test_trend_keeps_the_last_points_and_drops_old_ones():
    trend = trend_after([(float(t), 1000.0 - t) for t in range(0, 200, 10)])
    assert len(trend) == figures.TREND_POINTS and trend[-1] == (190.0, 810.0)
    assert figures.next_trend(trend, 1000.0, 5.0, max_age=100.0) == ((1000.0, 5.0),)
    assert figures.catch_up_at(trend) == pytest.approx(1000.0)


# ----------------------------------------------------------------------------- offsets (pure)


def test_offset_lag_messages_lost_and_worst_partition():
    f = GroupFigures(
        "g",
        "t",
        10.0,
        0,
        0,
        None,
        (),
        (
            PartitionFigure(0, 100, 150, 0, 5.0, None, False),
            PartitionFigure(1, 20, 400, 50, 1.0, 8.0, True),  # 30 messages below the log start
            PartitionFigure(2, 300, 300, 310, None, 9.0, False),  # caught up; the start is above
        ),
    )
    assert [p.offset_lag for p in f.partitions] == [50, 380, 0]
    assert [p.lost for p in f.partitions] == [0, 30, 10]
    assert figures.worst_partition_offset_lag(f, 0) == 50
    assert figures.worst_partition_offset_lag(f, None) == 380  # no time lag: the largest
    assert [p.lag_at(12.0) for p in f.partitions] == [7.0, 7.0, 0.0]  # 1 holds at 8 s


# ----------------------------------------------------------------------------- the sampler stores them


@pytest.fixture
def env(tmp_path):
    prom = tmp_path / "lagmon.prom"
    cfg = make_config(tmp_path, monitoring=MONITORING)
    output = dataclasses.replace(cfg.output, prometheus_path=str(prom), prometheus_partitions=True)
    cfg = dataclasses.replace(cfg, output=output)
    store = Store(cfg.database.path)
    kafka = ScriptedKafka()
    kafka.topic_partitions = {"orders": 1, "old": 1}
    kafka.listed = {"g1", "g2"}
    yield cfg, store, kafka
    store.close()


def drain_orders(kafka, t: float) -> None:
    """orders: 10 msg/s since t=900; g1 reads 5 msg/s until 1000, then 11 msg/s: its time
    lag is 1050 - 1.1 * (t - 1000) - ... = 150 - 0.1 * t + ... (50 s at 1000, 0 at 1500).
    old: idle at offset 500, of which retention deleted the first 400; g2 sits at 300."""
    committed = 5 * (t - 900) if t <= 1000 else 500 + 11 * (t - 1000)
    kafka.head = {("orders", 0): round(10 * (t - 900)), ("old", 0): 500}
    kafka.log_start = {("orders", 0): 0, ("old", 0): 400}
    kafka.commits = {"g1": {("orders", 0): round(committed)}, "g2": {("old", 0): 300}}
    kafka.times = {("old", 0, 300): (400, 900.0)}  # the message at 300 is gone: 400 is read


def test_sampler_stores_the_figures_and_the_trend_survives_a_restart(env):
    cfg, store, kafka = env
    sampler = sampler_at(cfg, store, kafka)
    for t in range(900, 1151, 10):
        drain_orders(kafka, float(t))
        sampler.step(float(t))
    f = store.group_figures()[("g1", "orders")]
    assert (f.sampled_at, f.offset_lag, f.messages_lost) == (1150.0, 2500 - 2150, 0)
    assert f.catch_up_at == pytest.approx(1500.0, abs=1.0)
    lost = store.group_figures()[("g2", "old")]
    assert (lost.offset_lag, lost.messages_lost, lost.catch_up_at) == (200, 100, None)
    assert [(p.partition, p.log_start) for p in lost.partitions] == [(0, 400)]

    store.close()  # a restart: a new store and a new sampler continue the same trend
    store = Store(cfg.database.path)
    drain_orders(kafka, 1160.0)
    sampler_at(cfg, store, kafka).step(1160.0)
    f = store.group_figures()[("g1", "orders")]
    assert len(f.trend) == figures.TREND_POINTS and f.catch_up_at == pytest.approx(1500.0, abs=1.0)

    Reporter(cfg, store).step(1165.0)
    doc = orjson.loads(open(cfg.output.json_path, "rb").read())
    entries = {c["group_id"]: c for c in doc["consumers"]}
    assert entries["g1"]["offset_lag"] == entries["g1"]["worst_partition_offset_lag"] == 2600 - 2260
    assert entries["g1"]["catch_up_seconds"] == pytest.approx(335, abs=1)
    assert entries["g1"]["messages_lost"] == 0
    assert (entries["g2"]["messages_lost"], entries["g2"]["catch_up_seconds"]) == (100, None)
    prom = open(cfg.output.prometheus_path).read()
    assert 'lagmon_consumer_messages_lost{group_id="g2",topic="old"} 100\n' in prom
    assert 'lagmon_partition_offset_lag{group_id="g2",topic="old",partition="0"} 200\n' in prom
    assert 'lagmon_consumer_catch_up_seconds{group_id="g1",topic="orders"} 33' in prom
    assert 'lagmon_consumer_catch_up_seconds{group_id="g2"' not in prom
    store.close()


def test_figures_are_forgotten_with_the_topic_and_the_group(env):
    cfg, store, kafka = env
    drain_orders(kafka, 1000.0)
    sampler_at(cfg, store, kafka).step(1000.0)
    assert set(store.group_figures()) == {("g1", "orders"), ("g2", "old")}
    assert set(store.group_figures([("g2", "old"), ("g9", "old")])) == {("g2", "old")}
    store.delete_topic("orders")
    assert set(store.group_figures()) == {("g2", "old")}
    store.purge_absent_groups(older_than=2000.0)
    assert store.group_figures() == {}


# ----------------------------------------------------------------------------- monitor figures


def test_instrumented_step_records_duration_and_counts_errors(env):
    _cfg, store, _kafka = env
    clock = iter([0.0, 0.25, 1.0, 2.0, 4.0])  # a failed step reads it once
    outcomes = iter([None, RuntimeError("boom"), None])

    def step(now):
        outcome = next(outcomes)
        if outcome:
            raise outcome
        return 5.0

    instrumented = Instrumented(step, store, logging.getLogger("t"), clock=lambda: next(clock))
    assert instrumented(1.0) == 5.0
    assert store.stage_figures()["sampler"] == {"last_sample_duration_seconds": 0.25, "errors_total": 0}
    with pytest.raises(RuntimeError):
        instrumented(2.0)
    assert store.stage_figures()["sampler"]["errors_total"] == 1
    instrumented(3.0)
    assert store.stage_figures()["sampler"] == {"last_sample_duration_seconds": 2.0, "errors_total": 1}
    monitor = report.build_monitor({}, now=3.0, sample_interval=1.0, stage_figures=store.stage_figures())
    assert monitor["sampler"] == {"last_sample_duration_seconds": 2.0, "errors_total": 1}


def test_a_prom_write_failure_is_shown_logged_once_and_lag_json_still_written(env, caplog):
    cfg, store, kafka = env
    drain_orders(kafka, 1000.0)
    sampler_at(cfg, store, kafka).step(1000.0)
    os.mkdir(cfg.output.prometheus_path)  # the path is a directory now: os.replace fails
    reporter = Reporter(cfg, store, logging.getLogger("lagmon.reporter"))
    with caplog.at_level(logging.INFO, logger="lagmon.reporter"):
        for t in (1001.0, 1002.0, 1003.0):
            reporter.write(t)
            doc = orjson.loads(open(cfg.output.json_path, "rb").read())
            assert doc["generated_at"] == report.iso_utc(t)
            assert "could not write" in doc["monitor"]["prometheus_error"]
        assert sum("could not write" in r.getMessage() for r in caplog.records) == 1
        os.rmdir(cfg.output.prometheus_path)
        reporter.write(1004.0)
        assert any("wrote" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)
    doc = orjson.loads(open(cfg.output.json_path, "rb").read())
    assert doc["monitor"]["prometheus_error"] is None
    assert b"lagmon_consumer_lag_seconds" in open(cfg.output.prometheus_path, "rb").read()


def test_reporter_without_a_prometheus_path_writes_no_prom_file(tmp_path):
    cfg = make_config(tmp_path, monitoring=MONITORING)
    with Store(cfg.database.path) as store:
        Reporter(cfg, store).step(1000.0)
        doc = orjson.loads(open(cfg.output.json_path, "rb").read())
    assert "prometheus_error" not in doc["monitor"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".prom") == []


def test_rows_without_figures_keep_the_spec_fields_only(env):
    _cfg, store, _kafka = env
    row = report.ConsumerRow("g", "t", 5, 0, "online", "fine", 1, 1000.0)
    assert ReporterFigures(_cfg, store, logging.getLogger("t")).rows([row], 1000.0) == [row]
    (entry,) = report.build_report([row], generated_at=1000.0)["consumers"]
    assert "offset_lag" not in entry and "catch_up_seconds" not in entry

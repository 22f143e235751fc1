"""Tests for lagmon.report: lag_display, report format, monitor (the atomic write: test_report_write)."""

from __future__ import annotations

import calendar
import dataclasses
import json
import math
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lagmon.report import (
    MAX_LAG_SECONDS,
    ConsumerRow,
    build_monitor,
    build_report,
    iso_utc,
    lag_display,
)
from lagmon.timelag import round_seconds

T0 = float(calendar.timegm((2026, 2, 18, 12, 0, 0)))  # 2026-02-18T12:00:00Z

SPEC_KEYS = {
    "group_id",
    "topic",
    "lag_seconds",
    "lag_display",
    "worst_partition",
    "status",
    "data_resolution",
    "partitions_monitored",
    "calculated_at",
}


# ----------------------------------------------------------------- lag_display


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "< 1 minute"),
        (1, "< 1 minute"),
        (59, "< 1 minute"),
        (60, "1 minute"),
        (119, "1 minute"),
        (120, "2 minutes"),
        (300, "5 minutes"),
        (3599, "59 minutes"),
        (3600, "1 hour"),
        (7199, "1 hour"),
        (7200, "2 hours"),
        (86399, "23 hours"),
        (86400, "1 day"),
        (2 * 86400 - 1, "1 day"),
        (2 * 86400, "2 days"),
        (3 * 86400, "3 days"),
        (400 * 86400, "400 days"),
        (MAX_LAG_SECONDS, f"{MAX_LAG_SECONDS // 86400} days"),
    ],
)
def test_lag_display_table(seconds, text):
    assert lag_display(seconds) == text


def test_lag_display_negative_is_under_a_minute():
    assert lag_display(-5) == "< 1 minute"


@given(st.integers(min_value=0, max_value=10**15))
def test_lag_display_matches_unit_rule(s):
    text = lag_display(s)
    if s < 60:
        assert text == "< 1 minute"
        return
    n_str, unit = text.split(" ")
    n = int(n_str)
    size, name = (86400, "day") if s >= 86400 else (3600, "hour") if s >= 3600 else (60, "minute")
    assert n == s // size
    assert unit == (name if n == 1 else name + "s")


# ----------------------------------------------------------------- iso_utc


def test_iso_utc():
    assert iso_utc(T0) == "2026-02-18T12:00:00Z"
    assert iso_utc(T0 + 0.999) == "2026-02-18T12:00:00Z"
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
    with pytest.raises(ValueError):
        iso_utc(float("nan"))


# ----------------------------------------------------------------- build_report


def row(group="g", topic="t", lag=300, worst=3, status="online", res="fine", parts=8, at=T0, lower=False):
    return ConsumerRow(group, topic, lag, worst, status, res, parts, at, lower)


@given(
    lag=st.none() | st.integers(-5, 10**12) | st.floats(allow_nan=True),
    exact=st.floats(allow_nan=True, allow_infinity=True),
)
def test_exact_lag_always_rounds_to_lag_seconds(lag, exact):
    c = build_report([dataclasses.replace(row(), lag_seconds=lag, lag_seconds_exact=exact)], generated_at=T0)
    c = c["consumers"][0]
    assert isinstance(c["lag_seconds_exact"], float) and c["lag_seconds_exact"] >= 0
    assert round_seconds(c["lag_seconds_exact"]) == c["lag_seconds"]
    if math.isfinite(exact) and exact >= 0 and abs(exact - c["lag_seconds"]) < 0.49:
        assert c["lag_seconds_exact"] == pytest.approx(exact, abs=0.0005)


def test_exact_lag_is_additive():
    assert "lag_seconds_exact" not in build_report([row()], generated_at=T0)["consumers"][0]
    c = build_report([dataclasses.replace(row(lag=12), lag_seconds_exact=12.3456)], generated_at=T0)
    assert c["consumers"][0]["lag_seconds_exact"] == 12.346


def test_report_matches_spec_example():
    rep = build_report([row(group="my-consumer-group", topic="my-topic")], generated_at=T0)
    assert rep == {
        "generated_at": "2026-02-18T12:00:00Z",
        "consumers": [
            {
                "group_id": "my-consumer-group",
                "topic": "my-topic",
                "lag_seconds": 300,
                "lag_display": "5 minutes",
                "worst_partition": 3,
                "status": "online",
                "data_resolution": "fine",
                "partitions_monitored": 8,
                "calculated_at": "2026-02-18T12:00:00Z",
                "lag_lower_bound": False,
            }
        ],
    }


def _check_types(c):
    assert set(c) >= SPEC_KEYS
    assert type(c["lag_seconds"]) is int and c["lag_seconds"] >= 0
    assert type(c["lag_display"]) is str
    assert c["worst_partition"] is None or type(c["worst_partition"]) is int
    if c["lag_seconds"] == 0:
        assert c["worst_partition"] is None
    assert c["status"] in ("online", "offline", "recovering")
    assert c["data_resolution"] in ("fine", "coarse")
    assert type(c["partitions_monitored"]) is int
    for k in ("group_id", "topic", "calculated_at", "lag_display"):
        assert type(c[k]) is str
    assert c["calculated_at"].endswith("Z") and len(c["calculated_at"]) == 20
    assert type(c["lag_lower_bound"]) is bool


@pytest.mark.parametrize(
    "lag, expected",
    [
        (None, 0),
        (float("nan"), 0),
        (-12, 0),
        (-0.5, 0),
        (0, 0),
        (12.4, 12),
        (12.6, 13),
        (0.4, 0),
        (0.5, 1),  # half up, as every lag is rounded (timelag.round_seconds)
        (2.5, 3),
        (float("inf"), MAX_LAG_SECONDS),
        (1e300, MAX_LAG_SECONDS),
        (2**80, MAX_LAG_SECONDS),
        (10**400, MAX_LAG_SECONDS),
    ],
)
def test_lag_coercion(lag, expected):
    rep = build_report([row(lag=lag, worst=2)], generated_at=T0)
    c = rep["consumers"][0]
    _check_types(c)
    assert c["lag_seconds"] == expected
    assert c["worst_partition"] == (None if expected == 0 else 2)
    orjson.dumps(rep)  # always serializable


def test_worst_partition_null_when_caught_up_and_lower_bound_only_with_lag():
    c = build_report([row(lag=0, worst=5, lower=True)], generated_at=T0)["consumers"][0]
    assert c["worst_partition"] is None and c["lag_lower_bound"] is False
    c = build_report([row(lag=9000, worst=5, lower=True, status="offline", res="coarse")], generated_at=T0)[
        "consumers"
    ][0]
    assert c["worst_partition"] == 5 and c["lag_lower_bound"] is True
    assert c["lag_display"] == "2 hours"


def test_order_largest_lag_then_group_then_topic():
    rows = [
        row("b", "x", 10),
        row("a", "y", 10),
        row("a", "x", 10),
        row("z", "z", 5000),
        row("c", "c", None),
        row("a", "a", 0),
    ]
    rep = build_report(rows, generated_at=T0)
    assert [(c["group_id"], c["topic"]) for c in rep["consumers"]] == [
        ("z", "z"),
        ("a", "x"),
        ("a", "y"),
        ("b", "x"),
        ("a", "a"),
        ("c", "c"),
    ]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["g1", "g2", "g3"]),
            st.sampled_from(["t1", "t2"]),
            st.one_of(
                st.none(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True)
            ),
            st.one_of(st.none(), st.integers(0, 1000)),
            st.sampled_from(["online", "offline", "recovering"]),
        ),
        max_size=20,
    )
)
def test_report_always_valid(items):
    rows = [row(g, t, lag, w, s, "fine" if s == "online" else "coarse") for g, t, lag, w, s in items]
    rep = build_report(rows, generated_at=T0)
    lags = [c["lag_seconds"] for c in rep["consumers"]]
    assert lags == sorted(lags, reverse=True)
    for c in rep["consumers"]:
        _check_types(c)
    assert json.loads(orjson.dumps(rep)) == rep


def test_missing_calculated_at_falls_back_to_generated_at():
    c = build_report([row(at=float("nan"))], generated_at=T0 + 61)["consumers"][0]
    assert c["calculated_at"] == "2026-02-18T12:01:01Z"


def test_bad_status_or_resolution_raises():
    with pytest.raises(ValueError, match="status"):
        build_report([row(status="gone")], generated_at=T0)
    with pytest.raises(ValueError, match="data_resolution"):
        build_report([row(res="medium")], generated_at=T0)


def test_status_is_lowercased():
    c = build_report([row(status="OFFLINE", res="coarse")], generated_at=T0)["consumers"][0]
    assert c["status"] == "offline"


def test_monitor_included_only_when_given():
    assert "monitor" not in build_report([], generated_at=T0)
    rep = build_report([], generated_at=T0, monitor={"stale": False, "stages": {}})
    assert rep["monitor"] == {"stale": False, "stages": {}}
    assert rep["consumers"] == []


# ----------------------------------------------------------------- build_monitor


@dataclass(frozen=True)
class FakeStage:  # same fields as lagmon.store.StageState
    stage: str
    pid: int | None
    started_at: float | None
    heartbeat_at: float | None
    last_success: float | None
    last_error: str | None
    last_error_at: float | None
    interval: float = 60.0


def stage(name, last_success, last_error=None, last_error_at=None):
    return FakeStage(name, 42, T0 - 3600, T0 - 1, last_success, last_error, last_error_at)


def test_monitor_fresh():
    mon = build_monitor(
        {"sampler": stage("sampler", T0 - 100), "reporter": stage("reporter", T0 - 5)},
        now=T0,
        sample_interval=60,
    )
    assert mon["stale"] is False and "stale_reason" not in mon
    assert list(mon["stages"]) == ["reporter", "sampler"]
    assert mon["stages"]["sampler"] == {
        "pid": 42,
        "started_at": "2026-02-18T11:00:00Z",
        "heartbeat_at": "2026-02-18T11:59:59Z",
        "last_success": "2026-02-18T11:58:20Z",
        "last_error": None,
        "last_error_at": None,
    }


@pytest.mark.parametrize(
    "stages, stale, reason_part",
    [
        ({}, True, "never run"),
        ({"reporter": stage("reporter", T0)}, True, "never run"),
        (
            {"sampler": stage("sampler", None, "KafkaUnavailable: down", T0 - 3)},
            True,
            "not completed a sample yet (last error: KafkaUnavailable: down)",
        ),
        ({"sampler": stage("sampler", T0 - 180)}, False, None),  # exactly 3 intervals
        ({"sampler": stage("sampler", T0 - 181, "boom", T0 - 1)}, True, "last error: boom"),
        ({"sampler": stage("sampler", T0 - 7200)}, True, "2 hours ago"),
    ],
)
def test_monitor_stale_rules(stages, stale, reason_part):
    mon = build_monitor(stages, now=T0, sample_interval=60)
    assert mon["stale"] is stale
    if stale:
        assert reason_part in mon["stale_reason"]
    else:
        assert "stale_reason" not in mon
    orjson.dumps(mon)


def test_monitor_ignores_error_older_than_last_success():
    # the store keeps last_error after a recovery; it is not why the data is stale
    mon = build_monitor(
        {"sampler": stage("sampler", T0 - 600, "old error", T0 - 700)}, now=T0, sample_interval=60
    )
    assert mon["stale"] is True
    assert mon["stale_reason"] == (
        "the sampler's last completed sample was 10 minutes ago (600 s), more than 3 sample intervals (180 s)"
    )
    assert mon["stages"]["sampler"]["last_error"] == "old error"


def test_monitor_error_times_and_mapping_rows():
    mon = build_monitor(
        {
            "sampler": {
                "pid": 7,
                "started_at": T0,
                "heartbeat_at": T0,
                "last_success": T0,
                "last_error": "x",
                "last_error_at": T0 - 60,
            }
        },
        now=T0,
        sample_interval=60,
    )
    s = mon["stages"]["sampler"]
    assert s["last_error"] == "x" and s["last_error_at"] == "2026-02-18T11:59:00Z"


# ----------------------------------------------------------------- monitor.starting (issue 11, item 13)


def sampler_row(started_at, last_success=None, last_error=None, last_error_at=None):
    return {
        "sampler": FakeStage("sampler", 42, started_at, started_at, last_success, last_error, last_error_at)
    }


def test_monitor_starting_while_the_first_sample_is_pending():
    # started 100 s ago, no sample yet: within 3 intervals (180 s) + the request timeout (10 s)
    mon = build_monitor(sampler_row(T0 - 100), now=T0, sample_interval=60, request_timeout=10)
    assert mon["stale"] is False and mon["starting"] is True
    assert "stale_reason" not in mon
    assert "has not completed its first sample" in mon["starting_reason"]
    # a restart: the previous run's sample is old, this run has not sampled yet
    mon = build_monitor(sampler_row(T0 - 5, last_success=T0 - 7200), now=T0, sample_interval=60)
    assert (mon["stale"], mon["starting"]) == (False, True)
    # a first attempt failed: still starting, the error shown
    mon = build_monitor(
        sampler_row(T0 - 30, last_error="KafkaUnavailable: down", last_error_at=T0 - 20),
        now=T0,
        sample_interval=60,
        request_timeout=10,
    )
    assert (mon["stale"], mon["starting"]) == (False, True)
    assert "KafkaUnavailable: down" in mon["starting_reason"]


def test_monitor_stale_after_the_starting_window():
    mon = build_monitor(
        sampler_row(T0 - 191, last_error="KafkaUnavailable: down", last_error_at=T0 - 1),
        now=T0,
        sample_interval=60,
        request_timeout=10,
    )
    assert (mon["stale"], mon["starting"]) == (True, False)
    assert "not completed a sample yet (last error: KafkaUnavailable: down)" in mon["stale_reason"]
    # the edge: exactly the window is still starting
    edge = build_monitor(sampler_row(T0 - 190), now=T0, sample_interval=60, request_timeout=10)
    assert edge["starting"] is True


def test_monitor_not_starting_once_sampled():
    mon = build_monitor(sampler_row(T0 - 100, last_success=T0 - 50), now=T0, sample_interval=60)
    assert (mon["stale"], mon["starting"]) == (False, False)
    assert "starting_reason" not in mon
    # sampled in this run, then nothing for more than 3 intervals: stale, not starting
    mon = build_monitor(sampler_row(T0 - 1000, last_success=T0 - 900), now=T0, sample_interval=60)
    assert (mon["stale"], mon["starting"]) == (True, False)

"""lagmon.prometheus, the textfile renderer: format, escaping, families, determinism, atomic write.

promtool, the deploy/ files and a real node_exporter + Prometheus: tests/test_prometheus_real.py.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest

from lagmon import prometheus
from lagmon.prometheus import FAMILIES, escape_label_value, render

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "lagmon.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "lagmon.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "lagmon-dashboard.json"

HOSTILE = [
    'quo"te',
    "back\\slash",
    "new\nline",
    "braces{}and=equals,comma",
    'all\\"\n{=}',
    "emoji 😀 and ü and 日本",
    "trailing backslash\\",
    "\\n literal backslash-n",
    "tab\tand\rreturn",
    "g" * 1000,
]


def consumer(group_id: str, topic: str = "orders", **fields) -> dict:
    entry = {
        "group_id": group_id,
        "topic": topic,
        "lag_seconds": 120,
        "lag_seconds_exact": 119.75,
        "lag_display": "2 minutes",
        "worst_partition": 1,
        "status": "online",
        "data_resolution": "fine",
        "partitions_monitored": 3,
        "calculated_at": "2026-02-18T11:59:30Z",
        "lag_lower_bound": False,
        "offset_lag": 57,
        "worst_partition_offset_lag": 40,
        "catch_up_seconds": 90.5,
        "messages_lost": 0,
    }
    entry.update(fields)
    return entry


def stage(last_success="2026-02-18T11:59:50Z", last_error=None, last_error_at=None) -> dict:
    return {
        "pid": 4242,
        "started_at": "2026-02-18T10:00:00Z",
        "heartbeat_at": "2026-02-18T11:59:55Z",
        "last_success": last_success,
        "last_error": last_error,
        "last_error_at": last_error_at,
    }


def report(consumers: list[dict], **monitor) -> dict:
    out: dict = {"generated_at": "2026-02-18T12:00:00Z", "consumers": consumers}
    if monitor:
        out["monitor"] = monitor
    return out


def full_report(groups=HOSTILE) -> dict:
    return report(
        [consumer(g, lag_seconds=100 + i, offset_lag=10 * i) for i, g in enumerate(groups)],
        stale=False,
        starting=False,
        stages={
            "housekeeper": dict(stage(), interval=900),
            "reporter": stage(last_error="disk full", last_error_at="2026-02-18T11:00:00Z"),
            "sampler": dict(stage(), interval=60),
        },
        sampler={"last_sample_duration_seconds": 0.75, "errors_total": 2},
    )


# ------------------------------------------------------------------ a small parser of the text format

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], text)


def parse(data: bytes) -> tuple[dict, dict, list[tuple[str, dict, str]]]:
    """(HELP by family, TYPE by family, [(name, labels, value)]); asserts each line is well formed."""
    helps, types, samples = {}, {}, []
    for line in data.decode("utf-8").split("\n")[:-1]:
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            helps[name] = text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"malformed line {line!r}"
            labels: dict[str, str] = {}
            rest = match.group(2) or ""
            while rest:
                label = _LABEL.match(rest)
                assert label, f"malformed labels in {line!r}"
                labels[label.group(1)] = _unescape(label.group(2))
                rest = rest[label.end() :]
            samples.append((match.group(1), labels, match.group(3)))
    return helps, types, samples


def values(data: bytes, family: str) -> dict[tuple, str]:
    return {tuple(sorted(labels.items())): value for name, labels, value in parse(data)[2] if name == family}


# ------------------------------------------------------------------ render: format and escaping


@pytest.mark.parametrize(
    "raw, escaped",
    [
        ('quo"te', 'quo\\"te'),
        ("back\\slash", "back\\\\slash"),
        ("new\nline", "new\\nline"),
        ("braces{}and=equals,comma", "braces{}and=equals,comma"),
        ('all\\"\n{=}', 'all\\\\\\"\\n{=}'),
        ("emoji 😀", "emoji 😀"),
        ("trailing\\", "trailing\\\\"),
        ("\\n", "\\\\n"),
        ("tab\tand\rreturn", "tab\tand\rreturn"),
        ("", ""),
    ],
)
def test_escape_label_value(raw, escaped):
    assert escape_label_value(raw) == escaped
    line = render(report([consumer(raw)])).decode().split("\n")[2]
    assert line == f'lagmon_consumer_lag_seconds{{group_id="{escaped}",topic="orders"}} 120'


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_names_round_trip(name):
    data = render(report([consumer(name, topic=name)]))
    for family, labels, _ in parse(data)[2]:
        if family.startswith("lagmon_consumer_"):
            assert labels["group_id"] == name and labels["topic"] == name
    assert ("😀".encode() in data) == ("😀" in name)


def test_long_name_kept_whole():
    data = render(report([consumer("g" * 1000)]))
    assert values(data, "lagmon_consumer_lag_seconds") == {
        (("group_id", "g" * 1000), ("topic", "orders")): "120"
    }


def test_lone_surrogate_does_not_break_the_file():
    data = render(report([consumer("bad\ud800name")]))
    assert "bad\ufffdname" in data.decode("utf-8")


def test_every_family_has_help_and_type_and_conventional_names():
    data = render(
        full_report(),
        partitions=[{"group_id": "g", "topic": "t", "partition": 0, "lag_seconds": 5, "offset_lag": 1}],
    )
    helps, types, samples = parse(data)
    names = {name for name, _, _ in samples}
    assert names == set(FAMILIES), set(FAMILIES) ^ names
    assert set(helps) == set(types) == names
    for name, kind in types.items():
        assert name.startswith("lagmon_")
        assert kind in ("gauge", "counter")
        assert (kind == "counter") == name.endswith("_total"), name
    assert "lagmon_sampler_errors_total" in types and types["lagmon_sampler_errors_total"] == "counter"
    text = data.decode()
    assert text.endswith("\n") and not text.endswith("\n\n")
    # HELP, then TYPE, then the samples of that family only
    assert re.search(r"# HELP lagmon_stale .*\n# TYPE lagmon_stale gauge\nlagmon_stale 0\n", text)


def test_golden_small_report():
    data = render(report([consumer("g1", catch_up_seconds=None, status="recovering", lag_lower_bound=True)]))
    body = [line for line in data.decode().splitlines() if not line.startswith("#")]
    assert body == [
        'lagmon_consumer_lag_seconds{group_id="g1",topic="orders"} 120',
        'lagmon_consumer_lag_exact_seconds{group_id="g1",topic="orders"} 119.75',
        'lagmon_consumer_lag_lower_bound{group_id="g1",topic="orders"} 1',
        'lagmon_consumer_status{group_id="g1",topic="orders",status="offline"} 0',
        'lagmon_consumer_status{group_id="g1",topic="orders",status="online"} 0',
        'lagmon_consumer_status{group_id="g1",topic="orders",status="recovering"} 1',
        'lagmon_consumer_data_resolution{group_id="g1",topic="orders",resolution="coarse"} 0',
        'lagmon_consumer_data_resolution{group_id="g1",topic="orders",resolution="fine"} 1',
        'lagmon_consumer_partitions{group_id="g1",topic="orders"} 3',
        'lagmon_consumer_offset_lag{group_id="g1",topic="orders"} 57',
        'lagmon_consumer_worst_partition_offset_lag{group_id="g1",topic="orders"} 40',
        'lagmon_consumer_messages_lost{group_id="g1",topic="orders"} 0',
        'lagmon_consumer_calculated_timestamp_seconds{group_id="g1",topic="orders"} 1771415970',
        "lagmon_report_generated_timestamp_seconds 1771416000",
        "lagmon_report_consumers 1",
    ]


def test_status_is_an_enum_with_exactly_one_1():
    data = render(report([consumer(f"g{s}", status=s) for s in ("online", "offline", "recovering")]))
    got = values(data, "lagmon_consumer_status")
    assert len(got) == 9
    for key, value in got.items():
        labels = dict(key)
        assert value == ("1" if labels["group_id"] == f"g{labels['status']}" else "0"), labels


def test_new_fields_absent_in_an_older_report_omit_their_series():
    old = {
        k: v
        for k, v in consumer("g").items()
        if k not in ("offset_lag", "worst_partition_offset_lag", "catch_up_seconds", "messages_lost")
    }
    names = {name for name, _, _ in parse(render(report([old])))[2]}
    for family in ("offset_lag", "worst_partition_offset_lag", "catch_up_seconds", "messages_lost"):
        assert f"lagmon_consumer_{family}" not in names
    assert "lagmon_consumer_lag_seconds" in names and "lagmon_stale" not in names


def test_exact_lag_is_its_own_series_and_absent_without_the_field():
    data = render(report([consumer("exact", lag_seconds=3, lag_seconds_exact=2.5), consumer("old")]))
    del_exact = report([{k: v for k, v in consumer("old").items() if k != "lag_seconds_exact"}])
    assert (
        values(data, "lagmon_consumer_lag_exact_seconds")[(("group_id", "exact"), ("topic", "orders"))]
        == "2.5"
    )
    assert "lagmon_consumer_lag_exact_seconds" not in {n for n, _, _ in parse(render(del_exact))[2]}


def test_catch_up_omitted_only_for_the_pair_whose_value_is_null():
    data = render(
        report([consumer("shrinking", catch_up_seconds=42.25), consumer("growing", catch_up_seconds=None)])
    )
    assert values(data, "lagmon_consumer_catch_up_seconds") == {
        (("group_id", "shrinking"), ("topic", "orders")): "42.25"
    }


def test_partition_series_only_when_given_and_sorted_numerically():
    rep = report([consumer("g")])
    assert b"lagmon_partition_" not in render(rep)
    rows = [
        {"group_id": "g", "topic": "t", "partition": p, "lag_seconds": p * 1.5, "offset_lag": p}
        for p in (10, 2, 0)
    ]
    lines = [
        line
        for line in render(rep, partitions=rows).decode().splitlines()
        if line.startswith("lagmon_partition_lag")
    ]
    assert lines == [
        'lagmon_partition_lag_seconds{group_id="g",topic="t",partition="0"} 0',
        'lagmon_partition_lag_seconds{group_id="g",topic="t",partition="2"} 3',
        'lagmon_partition_lag_seconds{group_id="g",topic="t",partition="10"} 15',
    ]


def test_deterministic_whatever_the_input_order():
    rep = full_report()
    shuffled = dict(rep, consumers=random.Random(7).sample(rep["consumers"], len(rep["consumers"])))
    assert render(rep) == render(shuffled) == render(json.loads(json.dumps(rep)))


def test_duplicate_pair_keeps_the_first_entry():
    data = render(report([consumer("g", lag_seconds=5), consumer("g", lag_seconds=9)]))
    assert values(data, "lagmon_consumer_lag_seconds") == {(("group_id", "g"), ("topic", "orders")): "5"}
    assert values(data, "lagmon_report_consumers") == {(): "1"}


def test_monitor_section():
    rep = report(
        [],
        stale=True,
        stages={
            "sampler": stage(last_error="broker down", last_error_at="2026-02-18T11:59:59Z"),
            "reporter": stage(last_error="old", last_error_at="2026-02-18T11:00:00Z"),
            "housekeeper": stage(last_success=None, last_error="disk", last_error_at="2026-02-18T11:00:00Z"),
        },
        sampler={"last_sample_duration_seconds": 1.25, "errors_total": 7},
    )
    data = render(rep)
    assert values(data, "lagmon_stale") == {(): "1"}
    assert "lagmon_starting" not in data.decode()
    failing = {dict(k)["stage"]: v for k, v in values(data, "lagmon_stage_failing").items()}
    assert failing == {"sampler": "1", "reporter": "0", "housekeeper": "1"}
    success = {
        dict(k)["stage"]: v for k, v in values(data, "lagmon_stage_last_success_timestamp_seconds").items()
    }
    assert success == {
        "sampler": "1771415990",
        "reporter": "1771415990",
    }  # none for a stage that never succeeded
    assert values(data, "lagmon_sampler_last_sample_duration_seconds") == {(): "1.25"}
    assert values(data, "lagmon_sampler_errors_total") == {(): "7"}
    assert values(data, "lagmon_report_consumers") == {(): "0"}


def test_values_and_timestamps():
    assert [
        prometheus.format_value(v) for v in (0, 3, 2.0, 0.1, float("nan"), float("inf"), -float("inf"), True)
    ] == ["0", "3", "2", "0.1", "NaN", "+Inf", "-Inf", "1"]
    assert prometheus.timestamp("2026-02-18T12:00:00Z") == 1771416000
    assert prometheus.timestamp(None) is None and prometheus.timestamp("yesterday") is None
    assert prometheus.timestamp("2026-02-18T12:00:00") is None  # naive: not ours to guess
    bad = report([consumer("g", calculated_at="garbage", offset_lag="many", partitions_monitored=None)])
    names = {name for name, _, _ in parse(render(bad))[2]}
    assert not names & {
        "lagmon_consumer_calculated_timestamp_seconds",
        "lagmon_consumer_offset_lag",
        "lagmon_consumer_partitions",
    }


def test_empty_report_renders_report_series_only():
    assert parse(render({"generated_at": "2026-02-18T12:00:00Z", "consumers": []}))[2] == [
        ("lagmon_report_generated_timestamp_seconds", {}, "1771416000"),
        ("lagmon_report_consumers", {}, "0"),
    ]


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "lagmon.prom"
    path.write_bytes(b"old\n")
    rep = full_report()
    prometheus.write(str(path), rep)
    assert path.read_bytes() == render(rep)
    assert os.listdir(tmp_path) == ["lagmon.prom"]
    with pytest.raises(AttributeError):
        prometheus.write(str(path), None)  # type: ignore[arg-type]
    assert path.read_bytes() == render(rep) and os.listdir(tmp_path) == ["lagmon.prom"]

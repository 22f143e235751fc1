"""promtool, the deploy/ files (alert rules, their unit tests, the Prometheus snippet, the
Grafana dashboard) and a real node_exporter + Prometheus serving lagmon's textfile.

Tests marked `prometheus` need Debian's prometheus and prometheus-node-exporter packages;
testing.prometheus installs them when missing (as root) and the tests FAIL, never skip,
when that is impossible.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from lagmon import prometheus
from lagmon.prometheus import escape_label_value, render
from lagmon.report import iso_utc
from tests.test_prometheus import HOSTILE, full_report

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "lagmon.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "lagmon.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "lagmon-dashboard.json"


# ------------------------------------------------------------------ promtool and a real Prometheus


@pytest.fixture(scope="module")
def tools():
    """Paths of promtool, prometheus and prometheus-node-exporter; installs them, or FAILS saying why."""
    from testing.prometheus import PrometheusToolError, ensure_installed

    try:
        return ensure_installed()
    except PrometheusToolError as exc:
        pytest.fail(f"the Prometheus tools are needed and could not be installed: {exc}", pytrace=False)


def _promtool(*args: str, stdin: bytes | None = None):
    from testing.prometheus import promtool

    return promtool(*args, stdin=stdin)


def _output(result) -> str:
    return (result.stdout + result.stderr).decode("utf-8", "replace")


@pytest.mark.prometheus
def test_promtool_check_metrics_accepts_hostile_names(tools):
    data = render(
        full_report(),
        partitions=[
            {"group_id": g, "topic": g, "partition": p, "lag_seconds": 1.5 * p, "offset_lag": p}
            for g in HOSTILE
            for p in (0, 1)
        ],
    )
    result = _promtool("check", "metrics", stdin=data)
    # promtool prints lint findings (naming, units, counters) and exits non-zero on any
    assert result.returncode == 0 and _output(result).strip() == "", _output(result)


@pytest.mark.prometheus
def test_promtool_check_metrics_can_fail(tools):
    bad = b'# TYPE lagmon_x gauge\nlagmon_x{group_id="a\nb"} 1\n'
    assert _promtool("check", "metrics", stdin=bad).returncode != 0


@pytest.mark.prometheus
def test_promtool_check_rules(tools):
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, _output(result)
    assert "SUCCESS: 8 rules found" in _output(result)


@pytest.mark.prometheus
def test_promtool_test_rules(tools):
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0 and "SUCCESS" in _output(result), _output(result)


def test_every_alert_has_a_unit_test_that_fires_and_one_that_does_not():
    alerts = {
        rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    }
    fired, quiet = set(), set()
    for test in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == alerts and quiet == alerts


@pytest.mark.prometheus
def test_prometheus_snippet_is_a_valid_config(tools, tmp_path):
    (tmp_path / "lagmon.rules.yml").write_text(RULES.read_text())
    snippet = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/lagmon.rules.yml" in snippet
    config = tmp_path / "prometheus.yml"
    config.write_text(snippet.replace("/etc/prometheus/lagmon.rules.yml", str(tmp_path / "lagmon.rules.yml")))
    result = _promtool("check", "config", str(config))
    assert result.returncode == 0, _output(result)


# Grafana's variables, replaced by what Grafana sends for "All" (multi-value with allValue ".*")
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$instance": ".*",
    "$group": ".*",
    "$topic": ".*",
}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            match = re.fullmatch(r"label_values\((.*), *(\w+)\)", query)
            assert match, f"unexpected variable query {query!r}"
            exprs.append(match.group(1))  # the selector Grafana asks the series API for
    return exprs


def substitute(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unreplaced Grafana variable in {expr!r}"
    return expr


def rule_expressions() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promql_string(text: str) -> str:
    return '"' + escape_label_value(text) + '"'


def test_dashboard_covers_the_issue():
    text = " ".join(dashboard_expressions())
    for family in (
        "lagmon_consumer_lag_seconds",
        "lagmon_consumer_status",
        "lagmon_consumer_offset_lag",
        "lagmon_consumer_catch_up_seconds",
        "lagmon_consumer_messages_lost",
        "lagmon_stale",
        "lagmon_stage_failing",
        "lagmon_report_generated_timestamp_seconds",
        "node_textfile_mtime_seconds",
        "lagmon_sampler_errors_total",
    ):
        assert family in text, family


@pytest.mark.prometheus
def test_real_node_exporter_and_prometheus(tools, tmp_path):
    from testing.prometheus import NodeExporter, Prometheus

    hostile = 'or"ders\\ \n{job="x"}=😀 ' + "z" * 200
    rep = full_report([*HOSTILE, hostile])
    entry = next(c for c in rep["consumers"] if c["group_id"] == hostile)
    entry["messages_lost"] = 1500  # LagmonMessagesLostToRetention (no `for`) fires at once
    lag = entry["lag_seconds"]
    rep["generated_at"] = iso_utc(time.time() - 3600)  # LagmonReportOld: older than 600 s
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    prometheus.write(
        str(textfiles / "lagmon.prom"),
        rep,
        partitions=[
            {"group_id": hostile, "topic": "orders", "partition": 0, "lag_seconds": 3.5, "offset_lag": 9}
        ],
    )
    with NodeExporter(textfiles) as exporter, Prometheus([exporter.target], rule_files=[RULES]) as prom:
        assert "node_textfile_scrape_error 0" in exporter.metrics()
        result = prom.wait_for(
            f"lagmon_consumer_lag_seconds{{group_id={promql_string(hostile)}}}", timeout=60
        )
        assert len(result) == 1 and result[0]["metric"]["group_id"] == hostile
        assert float(result[0]["value"][1]) == lag
        partition = prom.wait_for(f"lagmon_partition_offset_lag{{group_id={promql_string(hostile)}}}")
        assert [(p["metric"]["partition"], p["value"][1]) for p in partition] == [("0", "9")]
        for expr in rule_expressions():
            answer = prom.query(expr)
            assert answer.get("status") == "success", (expr, answer)
        # every dashboard expression evaluates, and finds data for this report (rate() needs two scrapes)
        for expr in map(substitute, dashboard_expressions()):
            answer = prom.query(expr)
            assert answer.get("status") == "success", (expr, answer)
            prom.wait_for(expr, timeout=30)
        # the rules loaded into Prometheus evaluate without error too
        deadline = time.monotonic() + 30
        while True:
            rules = [rule for group in prom.api("rules")["data"]["groups"] for rule in group["rules"]]
            if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules):
                break
            assert time.monotonic() < deadline, rules
            time.sleep(0.2)
        assert len(rules) == len(rule_expressions())
        assert [rule["health"] for rule in rules] == ["ok"] * len(rules), rules
        lost = next(rule for rule in rules if rule["name"] == "LagmonMessagesLostToRetention")
        assert [(a["labels"]["group_id"], a["state"]) for a in lost["alerts"]] == [(hostile, "firing")]
        assert lost["alerts"][0]["annotations"]["summary"].startswith(f"Consumer group {hostile} lost 1500 ")
        # the report was generated an hour ago: pending until its `for` (5m) elapses
        old = next(rule for rule in rules if rule["name"] == "LagmonReportOld")
        assert old["state"] in ("pending", "firing"), old


# ------------------------------------------------------------------ the README's Prometheus section stays true

README = DEPLOY.parent / "README.md"
README_REPORT = {
    "generated_at": "2026-02-18T12:00:00Z",
    "consumers": [
        {
            "group_id": 'billing "eu"',
            "topic": "payments",
            "lag_seconds": 2460,
            "lag_display": "41 minutes",
            "worst_partition": 2,
            "status": "online",
            "data_resolution": "fine",
            "partitions_monitored": 6,
            "calculated_at": "2026-02-18T11:59:30Z",
            "lag_lower_bound": False,
            "offset_lag": 18240,
            "worst_partition_offset_lag": 9100,
            "catch_up_seconds": 615.0,
            "messages_lost": 0,
        }
    ],
    "monitor": {
        "stale": False,
        "stages": {
            "sampler": {
                "pid": 812,
                "started_at": "2026-02-18T08:00:00Z",
                "heartbeat_at": "2026-02-18T11:59:58Z",
                "last_success": "2026-02-18T11:59:30Z",
                "last_error": None,
                "last_error_at": None,
            }
        },
        "sampler": {"last_sample_duration_seconds": 0.42, "errors_total": 3},
    },
}


def prometheus_section() -> str:
    return README.read_text().split("\n## Prometheus\n", 1)[1].split("\n## ", 1)[0]


def test_readme_lists_every_metric_and_alert():
    text = prometheus_section()
    for family in prometheus.FAMILIES:
        assert f"- `{family}" in text, family
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        assert f"`{rule['alert']}`" in text, rule["alert"]


def test_readme_example_is_real_output():
    example = prometheus_section().split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    rendered = render(README_REPORT).decode().splitlines()
    assert len(example) > 20 and all(line in rendered for line in example), set(example) - set(rendered)

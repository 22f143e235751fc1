"""`lagmon status --config PATH` as the operator runs it (a real subprocess), on a database
filled by the real store (no Kafka).

Exit codes: 0 fresh, 1 the sampler's heartbeat is stale or missing, 2 bad config,
3 database missing or unusable (and then the file is left as it was)."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lagmon.store import GroupStatus, Store

REPO = Path(__file__).resolve().parent.parent
SAMPLE = 60.0  # sample_interval_seconds: stale after 3 of them


MONITORING = {"sample_interval_seconds": SAMPLE, "offline_sample_interval_seconds": 600}
from tests.helpers import write_config  # noqa: E402


def status(config: Path, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lagmon", "status", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def heartbeats(
    store: Store, now: float, *, sampler_success_age: float | None, sampler_error: str | None = None
):
    """Rows for the three stages; the sampler's last success `sampler_success_age` seconds ago
    (None: it never succeeded)."""
    if sampler_success_age is not None:
        store.heartbeat(
            "sampler",
            pid=4101,
            started_at=now - 3600,
            at=now - sampler_success_age,
            interval=SAMPLE,
            success=True,
        )
    if sampler_error is not None:
        store.heartbeat(
            "sampler",
            pid=4101,
            started_at=now - 3600,
            at=now - 1,
            interval=SAMPLE,
            success=False,
            error=sampler_error,
        )
    store.heartbeat("reporter", pid=4102, started_at=now - 3600, at=now - 2, interval=SAMPLE, success=True)
    store.heartbeat("housekeeper", pid=4103, started_at=now - 3600, at=now - 30, interval=900, success=True)


def fill(path: str, now: float, **beats) -> None:
    """Heads at 100 (10 min ago) and 200 (5 min ago, still there); three groups:
    laggard  commit 150, static -> t* = now - 450 -> lag 7 minutes, online
    stopped  commit 100, static -> lag 10 minutes (its message went out 10 min ago), offline
    current  commit 200 -> caught up, lag 0."""
    store = Store(path)
    store.record_heads({("orders", 0): 100}, now - 600)
    store.record_heads({("orders", 0): 200}, now - 300)
    store.record_heads({("orders", 0): 200}, now - 5)
    for group, offset in (("laggard", 150), ("stopped", 100), ("current", 200)):
        store.record_commits({(group, "orders", 0): offset}, now - 120)
        store.record_commits({(group, "orders", 0): offset}, now - 5)
    store.save_group_status(
        [
            GroupStatus(
                "laggard", "orders", "online", now - 900, "first seen", 2, now - 5, now + 55, now - 5, 450.0
            ),
            GroupStatus(
                "stopped", "orders", "offline", now - 400, "static", 0, now - 70, now + 530, now - 70, 600.0
            ),
            GroupStatus(
                "current", "orders", "online", now - 900, "first seen", 0, now - 5, now + 55, now - 5, 0.0
            ),
        ]
    )
    heartbeats(store, now, **beats)
    store.close()


def table_rows(out: str) -> dict[str, list[str]]:
    """First column -> the line's columns (split on 2+ spaces)."""
    rows = {}
    for line in out.splitlines():
        cols = re.split(r"\s{2,}", line.strip())
        if cols and cols[0]:
            rows[cols[0]] = cols
    return rows


def fingerprint(path: Path) -> tuple:
    data = path.read_bytes()
    siblings = sorted(p.name for p in path.parent.iterdir())
    return hashlib.sha256(data).hexdigest(), len(data), path.stat().st_mtime_ns, siblings


# --------------------------------------------------------------------------- fresh / stale


def test_fresh_database_prints_groups_and_stages_exit_0(tmp_path):
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    fill(str(tmp_path / "state.db"), time.time(), sampler_success_age=5)
    out = status(cfg)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert re.search(r"^GROUP\s+TOPIC\s+STATUS\s+LAG\s+RESOLUTION\s+LAST SAMPLE$", text, re.M), text
    rows = table_rows(text)
    assert rows["stopped"][:5] == ["stopped", "orders", "offline", "10 minutes", "coarse"], text
    assert rows["laggard"][:5] == ["laggard", "orders", "online", "7 minutes", "fine"], text
    assert rows["current"][:5] == ["current", "orders", "online", "< 1 minute", "fine"], text
    assert re.fullmatch(r"\d+s ago", rows["laggard"][5]) and 5 <= int(rows["laggard"][5][:-5]) <= 30
    assert re.fullmatch(r"\d+s ago", rows["stopped"][5]) and 70 <= int(rows["stopped"][5][:-5]) <= 95
    order = [
        line.split()[0]
        for line in text.splitlines()
        if line.split() and line.split()[0] in rows and line.split()[0] in ("stopped", "laggard", "current")
    ]
    assert order == ["stopped", "laggard", "current"]  # largest lag first
    # the stages' heartbeats
    assert re.search(r"^STAGE\s+PID\s+LAST SUCCESS\s+HEARTBEAT\s+LAST ERROR$", text, re.M), text
    assert rows["sampler"][:2] == ["sampler", "4101"] and rows["sampler"][2].endswith("s ago")
    assert rows["reporter"][1] == "4102" and rows["housekeeper"][1] == "4103"
    assert int(rows["housekeeper"][3][:-5]) >= 30  # heartbeat age shown
    assert "STALE" not in text
    # the headline: how many group/topics and the worst of them, above the table
    assert text.splitlines()[0] == "3 group/topic(s); worst lag 10 minutes: group stopped on topic orders"


def test_stale_sampler_heartbeat_exit_1(tmp_path):
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    fill(
        str(tmp_path / "state.db"),
        time.time(),
        sampler_success_age=10 * SAMPLE,
        sampler_error="KafkaUnavailable: 127.0.0.1:9 unreachable",
    )
    out = status(cfg)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "STALE" in out.stdout and "10 minutes" in out.stdout, out.stdout
    assert out.stdout.startswith("STALE: "), out.stdout  # called out first, above the tables
    assert "unreachable" in out.stdout  # the sampler's error is shown
    assert table_rows(out.stdout)["stopped"][2] == "offline"  # the groups are still listed


def test_fresh_just_inside_three_intervals_exit_0(tmp_path):
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    fill(str(tmp_path / "state.db"), time.time(), sampler_success_age=2.5 * SAMPLE)
    out = status(cfg)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    "beats",
    [
        {"sampler_success_age": None},  # no sampler row at all
        {"sampler_success_age": None, "sampler_error": "KafkaUnavailable: auth"},  # never succeeded
    ],
    ids=["missing", "never-succeeded"],
)
def test_missing_sampler_heartbeat_exit_1(tmp_path, beats):
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    fill(str(tmp_path / "state.db"), time.time(), **beats)
    out = status(cfg)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "STALE" in out.stdout
    sampler = table_rows(out.stdout)["sampler"]
    assert sampler[2] == "never", out.stdout


def test_empty_lagmon_database_exit_1(tmp_path):
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    Store(str(tmp_path / "state.db")).close()
    out = status(cfg)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no consumer groups sampled yet" in out.stdout
    assert table_rows(out.stdout)["sampler"][1:4] == ["-", "never", "never"]


# --------------------------------------------------------------------------- database errors


def test_missing_database_exit_3_and_not_created(tmp_path):
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    before = sorted(os.listdir(tmp_path))
    out = status(cfg)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "database error" in out.stderr and str(tmp_path / "state.db") in out.stderr
    assert "does not exist" in out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(os.listdir(tmp_path)) == before  # nothing created


@pytest.mark.parametrize(
    "content",
    [
        b"this is not an sqlite database, just some text\n" * 200,
        b"SQLite format 3\x00" + b"\xff" * 4080,  # a damaged header
    ],
    ids=["text", "damaged-header"],
)
def test_not_a_database_exit_3_and_untouched(tmp_path, content):
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    db = tmp_path / "state.db"
    db.write_bytes(content)
    before = fingerprint(db)
    out = status(cfg)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "database error" in out.stderr and str(db) in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert fingerprint(db) == before


def test_other_applications_sqlite_file_exit_3_and_untouched(tmp_path):
    """(Found failing: Store switches the file to WAL before it finds no schema_version.)"""
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices(amount) VALUES (12.5)")
    conn.commit()
    conn.close()
    before = fingerprint(db)
    out = status(cfg)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "not a lagmon database" in out.stderr, out.stderr
    assert fingerprint(db) == before, "lagmon status modified another application's database"


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "text, expect",
    [
        ("kafka: [unclosed\n", "line"),  # YAML syntax
        (
            "kafka: {bootstrap_servers: 'x:1'}\nmonitoring: {sample_interval_seconds: -1}\n"
            "database: {path: /tmp/x.db}\noutput: {json_path: /tmp/x.json}\n",
            "sample_interval_seconds",
        ),
        (
            "kafka: {bootstrap_servers: 'x:1'}\ndatabase: {path: /nonexistent-dir-lm/x.db}\n"
            "output: {json_path: /tmp/x.json}\n",
            "database.path",
        ),
    ],
    ids=["yaml-syntax", "bad-value", "db-dir-missing"],
)
def test_bad_config_exit_2(tmp_path, text, expect):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    out = status(cfg)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "config error" in out.stderr and expect in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert os.listdir(tmp_path) == ["bad.yaml"]


def test_missing_config_file_exit_2(tmp_path):
    out = status(tmp_path / "nope.yaml")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "nope.yaml" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- hostile names


def test_control_characters_in_group_ids_and_topics_are_escaped_in_the_table(tmp_path):
    """A group id with a newline cannot add a forged row; an escape sequence cannot colour the
    terminal: both are shown escaped, on one table line each."""
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    now = time.time()
    fill(str(tmp_path / "state.db"), now, sampler_success_age=5)
    forged, red = "evil\nforged", "\x1b[31mred"
    store = Store(str(tmp_path / "state.db"))
    store.record_heads({(red, 0): 10}, now - 5)
    store.record_commits({(forged, "orders", 0): 200, (red, red, 0): 10}, now - 5)
    store.save_group_status(
        [
            GroupStatus(
                forged, "orders", "online", now - 900, "first seen", 0, now - 5, now + 55, now - 5, 0.0
            ),
            GroupStatus(red, red, "online", now - 900, "first seen", 0, now - 5, now + 55, now - 5, 0.0),
        ]
    )
    store.close()
    out = status(cfg)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "\x1b" not in out.stdout and "\r" not in out.stdout, out.stdout
    rows = table_rows(out.stdout)
    assert "forged" not in rows, out.stdout  # no line of its own
    assert rows["evil\\nforged"][:3] == ["evil\\nforged", "orders", "online"], out.stdout
    assert rows["\\x1b[31mred"][:3] == ["\\x1b[31mred", "\\x1b[31mred", "online"], out.stdout
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("GROUP"))
    table = lines[header + 1 : lines.index("", header)]
    assert len(table) == 5, out.stdout  # the three groups of fill() and the two hostile ones


def test_a_sampler_that_just_started_is_starting_not_stale_exit_0(tmp_path):
    """issue 11, item 13: a restart before the first sample lands pages no one."""
    cfg = write_config(tmp_path, fast=False, monitoring=MONITORING)
    now = time.time()
    fill(str(tmp_path / "state.db"), now, sampler_success_age=7200)  # the last run's sample is old
    with Store(str(tmp_path / "state.db")) as store:
        store.stage_started("sampler", pid=4242, started_at=now - 10, interval=SAMPLE)
    out = status(cfg)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("STARTING: the sampler started"), out.stdout
    assert "STALE" not in out.stdout
    assert table_rows(out.stdout)["sampler"][1] == "4242"

"""`./dev demo` (testing.demo): its table and exclusions (pure), and the whole demo run as a person
would, in a terminal under tmux, until every state has shown, then Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lagmon.stages.sampler import matching_pattern
from testing import demo
from testing.probe import port_open
from testing.stages import REPO

# A table row as the demo draws it: GROUP TOPIC STATUS LAG ...
ROW = re.compile(r"^(demo-\S+)\s+(demo-\S+)\s+(ONLINE|OFFLINE|RECOVERING)\s+(\d+) s\b")
PORTS = (19392, 19393, 19394)  # the demo's own broker; never the shared 29092
STATES_TIMEOUT = 330.0  # broker start (up to ~90 s on a busy machine) + the demo's ~2 min schedule
STOP_TIMEOUT = 120.0  # Ctrl-C to no process left: traffic, supervisord (stopwaitsecs 30), broker (30 s)


# --------------------------------------------------------------------------- pure


@given(st.text(alphabet="demo-ab1_.xZ", max_size=12))
def test_outside_prefix_excludes_exactly_the_names_without_the_prefix(name):
    patterns = demo.outside_prefix("demo-ab1-")
    if not name:
        return
    assert (matching_pattern(name, patterns) is None) == name.startswith("demo-ab1-")


def test_outside_prefix_refuses_glob_characters():
    with pytest.raises(ValueError, match="letters, digits"):
        demo.outside_prefix("demo-[x]")


def report(*consumers, stale=False):
    return {"generated_at": "2026-01-01T00:00:00Z", "consumers": list(consumers), "monitor": {"stale": stale}}


def consumer(group, lag, status="online", lower=False):
    return {
        "group_id": group,
        "topic": "demo-orders",
        "lag_seconds": lag,
        "status": status,
        "data_resolution": "fine" if status == "online" else "coarse",
        "calculated_at": "2026-01-01T00:00:00Z",
        "lag_lower_bound": lower,
    }


def test_table_worst_lag_first_with_status_age_and_explanation():
    now = 1767225605.0  # 5 s after calculated_at
    names = demo.Names("demo-")
    rep = report(
        consumer("demo-live", 0),
        consumer("demo-stops", 45, "recovering"),
        consumer("demo-behind", 31, lower=True),
    )
    lines = demo.format_table(demo.rows(rep, names.roles(), elapsed=95, now=now))
    assert lines[0].split()[:4] == ["GROUP", "TOPIC", "STATUS", "LAG"]
    parsed = [ROW.match(line).groups() for line in lines[1:]]  # type: ignore[union-attr]
    assert [(g, s, int(lag)) for g, _t, s, lag in parsed] == [
        ("demo-stops", "RECOVERING", 45),
        ("demo-behind", "ONLINE", 31),
        ("demo-live", "ONLINE", 0),
    ]
    assert "5s ago" in lines[1] and "coarse" in lines[1] and "resumed at 1:30" in lines[1]
    assert "(at least)" in lines[2] and "30 s after it was written" in lines[2]
    # Columns aligned: every row's STATUS starts where the header's does.
    col = lines[0].index("STATUS")
    assert all(line[col:].split()[0] in ("ONLINE", "RECOVERING") for line in lines[1:])


def test_table_colours_only_the_status_and_keeps_alignment():
    rep = report(consumer("demo-live", 0), consumer("demo-stops", 12, "offline"))
    plain = demo.format_table(demo.rows(rep, {}, 0, 0))
    coloured = demo.format_table(demo.rows(rep, {}, 0, 0), colour=True)
    strip = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in coloured]
    assert strip == plain
    assert "\x1b[31mOFFLINE" in coloured[1] and "\x1b[" not in coloured[0]


def test_clip_counts_only_visible_characters():
    line = "ab\x1b[31mcdef\x1b[0mgh"
    assert demo.clip(line, 4) == "ab\x1b[31mcd\x1b[0m\x1b[0m"
    assert demo.clip(line, 100) == line + "\x1b[0m"
    assert demo.clip("abcdef", 3) == "abc"


def test_explanations_follow_the_schedule():
    assert "stops at 1:00" in demo.explain("stops", 10)
    assert "resumes at 1:30" in demo.explain("stops", demo.STOP_AT + 1)
    assert "RECOVERING" in demo.explain("stops", demo.RESUME_AT + 1)
    assert "arrive at 0:40" in demo.explain("burst", 0)
    assert "its lag jumps" in demo.explain("burst", demo.BURST_AT)


def test_an_unreachable_bootstrap_is_a_clear_error_and_starts_nothing(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "testing.demo", "--bootstrap", "127.0.0.1:9", "--dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "--bootstrap 127.0.0.1:9: no Kafka broker answers there" in out.stderr
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- the real demo


class Tmux:
    """A tmux server of our own (its own socket, no user config) with one 160x50 session."""

    def __init__(self, name: str):
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            self.base + list(args), check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def start(self, argv: list[str], cwd: Path) -> None:
        # Several arguments: tmux runs them without a shell, so the pane's process is the demo.
        self("new-session", "-d", "-s", "demo", "-x", "160", "-y", "50", "-c", str(cwd), *argv, ";",
             "set-option", "-t", "demo", "remain-on-exit", "on")  # fmt: skip

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "demo")

    def pane(self, fmt: str) -> str:
        return self("display-message", "-p", "-t", "demo", fmt).strip()

    def kill(self) -> None:
        subprocess.run(self.base + ["kill-server"], capture_output=True, timeout=10)


def alive_not_zombie(pid: int) -> bool:
    """The process exists and is not a zombie (tmux 3.3a may leave its dead pane's process
    unreaped for a while: it has exited and holds nothing but its pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ours(directory: Path) -> dict[int, str]:
    """pid -> command line of every process (tmux aside) whose command line names directory."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(directory) in cmd and not cmd.startswith("tmux"):
            found[int(entry.name)] = cmd
    return found


@pytest.mark.kafka
@pytest.mark.supervisord
def test_demo_under_tmux_shows_every_state_and_ctrl_c_leaves_nothing(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for this test (Debian: apt-get install tmux)", pytrace=False)
    busy = [p for p in PORTS if port_open(p, timeout=0.5)]
    if busy:
        pytest.fail(f"the demo's ports {busy} are in use; this test needs 19392-19394 free", pytrace=False)
    workdir = tmp_path / "demo"
    tmux = Tmux(f"lagmon-demo-test-{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    tmux.start([sys.executable, "-m", "testing.demo", "--dir", str(workdir), "--port", str(PORTS[0])], REPO)
    first: dict[tuple[str, str], float] = {}  # (group, STATUS) -> seconds since launch
    lags: dict[str, list[int]] = {}
    screen, kept = "", ""
    try:
        deadline = started + STATES_TIMEOUT
        while time.monotonic() < deadline:
            screen = tmux.screen()
            assert tmux.pane("#{pane_dead}") == "0", f"the demo exited early:\n{screen}"
            for line in screen.splitlines():
                m = ROW.match(line)
                if m:
                    group, _topic, status, lag = m.groups()
                    first.setdefault((group, status), round(time.monotonic() - started, 1))
                    lags.setdefault(group, []).append(int(lag))
                    if status == "RECOVERING":
                        kept = screen
            seen = {status for _g, status in first}
            if (
                seen == {"ONLINE", "OFFLINE", "RECOVERING"}
                and ("demo-stops", "OFFLINE") in first
                and ("demo-stops", "RECOVERING") in first
                and any(20 <= lag <= 45 for lag in lags.get("demo-behind", []))
                and max(lags.get("demo-burst", [0])) >= 5
            ):
                break
            time.sleep(1.0)
        else:
            pytest.fail(f"not every state shown within {STATES_TIMEOUT:.0f} s: {first}\n{screen}")
        print(f"\nfirst seen (s since launch): {first}\nlags: { {g: max(v) for g, v in lags.items()} }")
        print("screen while demo-stops was RECOVERING:\n" + kept)

        # Every pid the demo started, from its own output, checked against its files.
        pids_line = next(line for line in screen.splitlines() if line.startswith("pids: "))
        pids = {k: int(v) for k, v in re.findall(r"([\w~-]+) (\d+)", pids_line)}
        want = {"demo", "broker", "lagmon-run", "supervisord", "sampler", "reporter", "housekeeper"}
        assert want <= set(pids), pids_line
        assert pids["demo"] == int(tmux.pane("#{pane_pid}"))
        assert pids["broker"] == int((workdir / "kafka" / "broker.pid").read_text())
        assert pids["supervisord"] == int((workdir / "run" / "supervisord.pid").read_text())
        running = ours(workdir)
        assert set(pids.values()) <= set(running), (pids, running)

        tmux("send-keys", "-t", "demo", "C-c")
        pressed = time.monotonic()
        exit_file = workdir / "exit-code"
        while time.monotonic() < pressed + STOP_TIMEOUT:
            # The demo writes its exit code last (tmux's own pane status can come late or empty).
            if exit_file.exists() and tmux.pane("#{pane_dead}") == "1" and not ours(workdir):
                break
            time.sleep(0.5)
        took = time.monotonic() - pressed
        final = tmux.screen()
        print(f"Ctrl-C to nothing left: {took:.1f} s\n{final}")
        assert exit_file.exists(), f"the demo did not finish within {STOP_TIMEOUT:.0f} s of Ctrl-C:\n{final}"
        assert exit_file.read_text().strip() == "0", (
            f"demo exit code {exit_file.read_text().strip()}:\n{final}"
        )
        assert not ours(workdir), f"left running {took:.0f} s after Ctrl-C: {ours(workdir)}"
        # A killed process lingers as a zombie until its parent (or init) reaps it: bounded wait.
        gone_by = time.monotonic() + 15
        while [p for p in pids.values() if alive_not_zombie(p)] and time.monotonic() < gone_by:
            time.sleep(0.2)
        assert not [p for p in pids.values() if alive_not_zombie(p)]
        assert "nothing left running" in final
        assert not any(port_open(p, timeout=0.5) for p in PORTS)
    finally:
        tmux.kill()
        for pid in ours(workdir):  # only after a failure: what the demo started and left
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.kafka
@pytest.mark.supervisord
def test_sigterm_on_a_given_broker_stops_everything_and_deletes_the_demo_topics(tmp_path, kafka_bootstrap):
    """--bootstrap (the shared test broker): no broker of its own; SIGTERM stops the rest, and the
    demo's topics and groups are deleted from a broker it did not start."""
    from testing.traffic import admin, read_report

    proc = subprocess.Popen(
        [sys.executable, "-m", "testing.demo", "--bootstrap", kafka_bootstrap, "--dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        report = None
        while time.monotonic() < deadline and proc.poll() is None:
            report = read_report(tmp_path / "lag.json")
            stages = ((report or {}).get("monitor") or {}).get("stages") or {}
            if report and report["consumers"] and all(s in stages for s in demo.STAGES):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no lag.json with demo groups within 90 s: {report}")
        assert report is not None
        prefixes = {c["group_id"].rsplit("-", 1)[0] for c in report["consumers"]}
        assert len(prefixes) == 1 and prefixes.pop().startswith("demo-")  # only the demo's groups
        assert ours(tmp_path)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=STOP_TIMEOUT)
        assert proc.returncode == 0, out
        assert "stopping (SIGTERM)" in out and "nothing left running" in out
        assert not ours(tmp_path), ours(tmp_path)
        prefix = report["consumers"][0]["topic"].rsplit("-", 1)[0] + "-"
        topics = admin(kafka_bootstrap).list_topics(timeout=10).topics
        assert not [t for t in topics if t.startswith(prefix)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in ours(tmp_path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

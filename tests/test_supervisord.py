"""The deployment: the three stages under a REAL supervisord (supervisor 4.3).

`lagmon run --config CFG --run-dir DIR` runs supervisord in its own process, watched from
inside (lagmon.runner), with a conf rendered by lagmon.supervisor into DIR; the committed top-level supervisord.conf is the same renderer
for a checkout. Every wait here is bounded; run dirs are short /tmp paths because a unix
socket path is limited to 107 bytes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import pytest

from lagmon import supervisor
from lagmon.store import Store
from testing.stages import write_config
from testing.traffic import LagConsumer, SteadyProducer, create_topic, read_report, unique, wait_for

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STAGES = supervisor.STAGES
START_TIMEOUT = 60.0  # startsecs is 5 s; the stages import confluent_kafka
FATAL_TIMEOUT = 40.0  # startretries 3 with backoff 1 + 2 + 3 s, plus the starts themselves


def short_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="lm", dir="/tmp"))


def ctl(conf: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(conf), *args], capture_output=True, text=True, timeout=timeout
    )


def states(conf: Path) -> dict[str, str]:
    """stage -> supervisord state (RUNNING, STARTING, BACKOFF, FATAL, STOPPED, ...); {} if unreachable."""
    out = ctl(conf, "status", timeout=20)
    if out.returncode == 4:
        return {}
    got = {}
    for line in out.stdout.splitlines():
        m = re.match(r"lagmon:(\w+)\s+([A-Z]+)", line)
        if m:
            got[m.group(1)] = m.group(2)
    return got


def stage_pid(conf: Path, stage: str) -> int:
    out = ctl(conf, "pid", f"lagmon:{stage}", timeout=20)
    try:
        return int(out.stdout.strip())
    except ValueError:
        return 0


def wait_states(conf: Path, want: dict[str, str], timeout: float) -> dict[str, str]:
    last: dict[str, str] = {}

    def ok():
        nonlocal last
        last = states(conf)
        return all(last.get(s) == w for s, w in want.items())

    try:
        wait_for(ok, timeout, interval=0.3, what=f"supervisord states {want}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last seen {last}") from None
    return last


def wait_running(conf: Path, timeout: float = START_TIMEOUT) -> dict[str, int]:
    wait_states(conf, {s: "RUNNING" for s in STAGES}, timeout)
    return {s: stage_pid(conf, s) for s in STAGES}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def cmdlines() -> dict[int, str]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    out[int(entry)] = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return out


def ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def descendants(root: int) -> dict[int, str]:
    """Every live process under root (children, their children, ...) -> its command line."""
    cmds = cmdlines()
    parents = {pid: ppid(pid) for pid in cmds}
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, pp in parents.items():
            if pp == parent and pid not in found and alive(pid):
                found[pid] = cmds[pid]
                frontier.append(pid)
    return found


def supervisord_pid(d: Deployment) -> int:
    """supervisord's pid: the `lagmon run` process itself (lagmon.runner), once it writes its pid file."""

    def written() -> int:
        try:
            return int((d.run_dir / "supervisord.pid").read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    pid = wait_for(lambda: written() == d.proc.pid and d.proc.pid, 30, what="supervisord's pid file")
    assert "lagmon.runner" in cmdlines().get(pid, ""), cmdlines().get(pid)
    return pid


def strays(run_dir: Path, config: Path) -> dict[int, str]:
    me = os.getpid()
    needles = [str(run_dir)] + [f"processes.{s} --config {config}" for s in STAGES]
    return {
        pid: cmd
        for pid, cmd in cmdlines().items()
        if pid != me and alive(pid) and any(n in cmd for n in needles)
    }


class Deployment:
    """`python -m lagmon run --config CONFIG --run-dir RUN_DIR` in its own session."""

    def __init__(self, config: Path, run_dir: Path, *, cwd: Path):
        self.config, self.run_dir = config, run_dir
        self.conf = run_dir / "supervisord.conf"
        self.out_path = run_dir.parent / f"{run_dir.name}-lagmon-run.out"
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lagmon", "run", "--config", str(config), "--run-dir", str(run_dir)],
            cwd=cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def logs(self) -> str:
        parts = [f"--- lagmon run output\n{self.out_path.read_text(errors='replace')}"]
        for p in sorted((self.run_dir / "logs").glob("*.log")):
            parts.append(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM `lagmon run` (it stops supervisord and the stages) and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        """Last resort in teardown: the process group this test started."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        if not self._out.closed:
            self._out.close()


@pytest.fixture
def deploy():
    """deploy(config, run_dir) -> a started Deployment; stopped (and checked for strays) afterwards."""
    started: list[Deployment] = []

    def start(config: Path, run_dir: Path, cwd: Path | None = None) -> Deployment:
        d = Deployment(config, run_dir, cwd=cwd or run_dir.parent)
        started.append(d)
        return d

    yield start
    for d in started:  # all stopped first: two deployments may share a run dir
        try:
            if d.proc.poll() is None:
                d.terminate()
        except subprocess.TimeoutExpired:
            pass
        finally:
            d.kill()
    for d in started:
        # the stages must not outlive supervisord, whatever the test did
        deadline = time.monotonic() + 10
        while (leftover := strays(d.run_dir, d.config)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in leftover:  # processes this test started, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not leftover, f"stray processes after the test: {leftover}"
    for d in started:
        shutil.rmtree(d.run_dir.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def traffic(kafka_bootstrap):
    """A topic with a steady producer and a group that lags ~4 s behind it: real work for the sampler."""
    topic, group = unique("sup"), unique("sup-group")
    create_topic(kafka_bootstrap, topic, 2)
    producer = SteadyProducer(kafka_bootstrap, topic, 2, rate=20)
    consumer = LagConsumer(kafka_bootstrap, group, topic, delay=4.0)
    producer.start()
    consumer.start()
    try:
        yield kafka_bootstrap, topic, group
    finally:
        consumer.stop()
        producer.stop()


class ReportReader(threading.Thread):
    """Parses lag.json every 50 ms; records every failure to parse once the file exists."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path = path
        self.stop_event = threading.Event()
        self.reads = 0
        self.errors: list[str] = []
        self.latest: dict | None = None
        self.existed = False

    def run(self) -> None:
        while not self.stop_event.wait(0.05):
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                if self.existed:
                    self.errors.append("lag.json disappeared")
                continue
            self.existed = True
            try:
                report = orjson.loads(data)
                assert isinstance(report, dict) and "generated_at" in report and "consumers" in report
            except (orjson.JSONDecodeError, AssertionError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}; {len(data)} bytes: {data[:80]!r}")
                continue
            self.reads += 1
            self.latest = report

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)


def report_where(reader: ReportReader, predicate, timeout: float, what: str) -> dict:
    return wait_for(
        lambda: reader.latest if reader.latest and predicate(reader.latest) else None,
        timeout,
        interval=0.05,
        what=what,
    )


def generated_advances(reader: ReportReader, timeout: float = 10.0) -> None:
    first = report_where(reader, lambda r: True, timeout, "a report")["generated_at"]
    report_where(
        reader, lambda r: r["generated_at"] > first, timeout, f"generated_at to advance past {first}"
    )


def consumer_row(report: dict, group: str) -> dict | None:
    return next((c for c in report["consumers"] if c["group_id"] == group), None)


# --------------------------------------------------------------------------- with the broker


@pytest.mark.supervisord
@pytest.mark.kafka
def test_sigkilled_stages_restart_and_report_stays_valid(traffic, deploy):
    bootstrap, topic, group = traffic
    base = short_dir()
    config = write_config(base, bootstrap)
    lag_json = base / "lag.json"
    reader = ReportReader(lag_json)
    reader.start()
    d = deploy(config, base / "run")
    try:
        pids = wait_running(d.conf)
        assert all(pids.values()), pids
        report = report_where(
            reader,
            lambda r: (consumer_row(r, group) or {}).get("lag_seconds", 0) > 0,
            60,
            f"a positive lag for {group}",
        )
        assert consumer_row(report, group)["topic"] == topic

        # 1. SIGKILL each stage: supervisord restarts it with a new pid
        for stage in STAGES:
            old = pids[stage]
            os.kill(old, signal.SIGKILL)
            wait_for(lambda old=old: not alive(old), 10, interval=0.05, what=f"{stage} pid {old} to die")
            new = wait_for(
                lambda stage=stage, old=old: (p := stage_pid(d.conf, stage)) not in (0, old) and p,
                20,
                what=f"a new {stage} pid",
            )
            wait_states(d.conf, {s: "RUNNING" for s in STAGES}, START_TIMEOUT)
            assert stage_pid(d.conf, stage) == new and alive(new)
            for other in STAGES:
                if other != stage:
                    assert stage_pid(d.conf, other) == pids[other], f"killing {stage} restarted {other}"
            pids[stage] = new
            generated_advances(reader)  # the reporter (maybe the new one) writes on
        sup_log = (d.run_dir / "logs" / "supervisord.log").read_text()
        for stage in STAGES:
            assert re.search(rf"exited: {stage} \(terminated by SIGKILL; not expected\)", sup_log), sup_log

        # 2. the sampler stays down: the reporter keeps writing and flags stale after 3 intervals
        report_where(reader, lambda r: not r["monitor"]["stale"], 30, "a fresh report before the stop")
        out = ctl(d.conf, "stop", "lagmon:sampler")
        assert out.returncode == 0, out.stdout + out.stderr
        stopped_at = time.time()
        assert states(d.conf)["sampler"] == "STOPPED"
        stale = report_where(reader, lambda r: r["monitor"]["stale"], 20, "monitor.stale to become true")
        assert time.time() - stopped_at >= 1.0  # not at once: 3 sample intervals of 1 s
        assert "sampler" in stale["monitor"]["stale_reason"]
        generated_advances(reader)  # still rewritten while stale
        assert consumer_row(reader.latest, group) is not None  # the groups stay in the report
        out = ctl(d.conf, "start", "lagmon:sampler")
        assert out.returncode == 0, out.stdout + out.stderr
        report_where(reader, lambda r: not r["monitor"]["stale"], 30, "monitor.stale to become false")
        assert consumer_row(reader.latest, group)["lag_seconds"] >= 0
    except BaseException:
        print(d.logs())
        raise
    finally:
        reader.stop()

    # 3. never a partial or invalid file, then a clean stop and an intact database
    assert reader.errors == [], reader.errors[:5]
    assert reader.reads > 100
    assert d.terminate() == 0
    with Store(str(base / "state.db")) as store:
        assert store.integrity_check() == "ok"


@pytest.mark.supervisord
@pytest.mark.kafka
def test_restarting_the_reporter_leaves_the_other_stages_alone(traffic, deploy):
    bootstrap, _topic, _group = traffic
    base = short_dir()
    d = deploy(write_config(base, bootstrap), base / "run")
    pids = wait_running(d.conf)
    out = ctl(d.conf, "restart", "lagmon:reporter")
    assert out.returncode == 0, out.stdout + out.stderr
    after = wait_running(d.conf)
    assert after["reporter"] != pids["reporter"] and not alive(pids["reporter"])
    assert (after["sampler"], after["housekeeper"]) == (pids["sampler"], pids["housekeeper"])
    # the reporter was stopped by SIGTERM and exited 0 (an expected exit, not a crash)
    sup_log = (d.run_dir / "logs" / "supervisord.log").read_text()
    assert re.search(r"stopped: reporter \(exit status 0\)", sup_log), sup_log
    assert "reporter" in (d.run_dir / "logs" / "reporter.log").read_text()


@pytest.mark.supervisord
@pytest.mark.kafka
def test_sigterm_stops_lagmon_run_cleanly(traffic, deploy):
    bootstrap, _topic, _group = traffic
    base = short_dir()
    config = write_config(base, bootstrap)
    d = deploy(config, base / "run")
    pids = wait_running(d.conf)
    assert d.proc.pid not in pids.values()
    wait_for((base / "lag.json").exists, 30, what="lag.json")
    started = time.monotonic()
    assert d.terminate(timeout=90) == 0, d.logs()
    took = time.monotonic() - started
    assert took < supervisor.STOPWAITSECS, f"stopping took {took:.1f} s: a stage ignored SIGTERM"
    assert not any(alive(p) for p in pids.values())
    assert strays(d.run_dir, config) == {}
    for stage in STAGES:  # each stage finished its step and exited 0 on SIGTERM, not killed
        log = (d.run_dir / "logs" / f"{stage}.log").read_text()
        assert "stopping on SIGTERM" in log, log[-2000:]
    sup_log = (d.run_dir / "logs" / "supervisord.log").read_text()
    for stage in STAGES:
        assert re.search(rf"stopped: {stage} \(exit status 0\)", sup_log), sup_log
    assert read_report(base / "lag.json") is not None


def wait_gone(pids, timeout: float) -> float:
    """Seconds until none of pids is alive (AssertionError naming the survivors after timeout)."""
    started = time.monotonic()
    try:
        wait_for(
            lambda: not any(alive(p) for p in pids), timeout, interval=0.05, what="the processes to exit"
        )
    except TimeoutError:
        left = {p: c for p, c in cmdlines().items() if p in pids and alive(p)}
        raise AssertionError(f"still alive {timeout} s after losing their parent: {left}") from None
    return time.monotonic() - started


ORPHAN_TIMEOUT = 10.0  # a stage's hard-exit bound (5 s) after losing its parent, plus margin


@pytest.mark.supervisord
@pytest.mark.kafka
def test_sigkilled_supervisord_leaves_no_orphans_and_one_copy_per_database(traffic, deploy):
    bootstrap, _topic, group = traffic
    base = short_dir()
    config = write_config(base, bootstrap)
    d = deploy(config, base / "run")
    try:
        pids = wait_running(d.conf)
        read = lambda: read_report(base / "lag.json")  # noqa: E731
        wait_for(lambda: consumer_row(read() or {"consumers": []}, group), 60, what=f"{group} in lag.json")
        sup = supervisord_pid(d)
        tree = descendants(sup)  # the stages and the sampler's Kafka worker
        under_sampler = descendants(pids["sampler"])
        assert [c for c in under_sampler.values() if "lagmon.kafka.worker" in c], under_sampler
        assert len(under_sampler) == 1, under_sampler  # no multiprocessing resource tracker
        assert set(pids.values()) <= set(tree), (pids, tree)

        # 1. supervisord (the lagmon run process) SIGKILLed, as the OOM killer does: its process
        # manager sees the signal, and everything under it exits
        os.kill(sup, signal.SIGKILL)
        took = wait_gone(set(tree), ORPHAN_TIMEOUT)
        assert d.proc.wait(10) == -signal.SIGKILL
        assert (d.run_dir / "supervisor.sock").exists()  # stale socket and pid file left behind

        # 2. a new lagmon run over the stale socket and pid file starts cleanly
        d2 = deploy(config, d.run_dir)
        pids2 = wait_running(d2.conf)
        assert not set(pids2.values()) & set(pids.values())
        generated = (read() or {}).get("generated_at")
        wait_for(lambda: (read() or {}).get("generated_at", "") > (generated or ""), 20, what="a new report")

        # 3. a second lagmon run on the same run dir refuses: exit 4, naming the live supervisord
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "lagmon", "run", "--config", str(config), "--run-dir", str(d.run_dir)],
            cwd=base,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 4, second.stderr
        assert "already running" in second.stderr and str(supervisord_pid(d2)) in second.stderr, second.stderr
        assert time.monotonic() - started < 30

        # 4. a stage started by hand while the supervised one runs: exit 4 naming the database and pid
        by_hand = subprocess.run(
            [sys.executable, "-m", "processes.sampler", "--config", str(config)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert by_hand.returncode == 4, by_hand.stderr
        assert str(base / "state.db") in by_hand.stderr, by_hand.stderr
        assert f"pid {pids2['sampler']}" in by_hand.stderr, by_hand.stderr
        assert wait_running(d2.conf) == pids2  # nothing disturbed
        print(f"orphans gone {took:.2f} s after supervisord was SIGKILLed ({len(tree)} processes)")
    except BaseException:
        print(d.logs())
        raise


# --------------------------------------------------------------------------- without the broker


def unreachable_config(base: Path) -> Path:
    """A valid config whose broker does not exist: the stages start and stay up (the sampler retries)."""
    return write_config(base, "127.0.0.1:9", kafka={"request_timeout_seconds": 1})


@pytest.mark.supervisord
def test_config_error_makes_the_stage_fatal_and_lagmon_run_exit_2(deploy):
    base = short_dir()
    config = unreachable_config(base)
    d = deploy(config, base / "run")
    pids = wait_running(d.conf)
    good = config.read_text()
    config.write_text(good.replace("report_interval_seconds: 1", "report_interval_seconds: -1"))
    os.kill(pids["reporter"], signal.SIGKILL)  # it restarts, now reading the broken file
    started = time.monotonic()
    try:
        code = d.proc.wait(FATAL_TIMEOUT + supervisor.STOPWAITSECS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"lagmon run still running with the reporter broken\n{d.logs()}") from None
    took = time.monotonic() - started
    out = d.out_path.read_text()
    assert code == 2, d.logs()
    assert "reporter (exit 2) could not start" in out and "exit 2" in out, out
    sup_log = (d.run_dir / "logs" / "supervisord.log").read_text()
    assert (
        len(re.findall(r"exited: reporter \(exit status 2; not expected\)", sup_log))
        == 1 + supervisor.STARTRETRIES
    )
    assert sup_log.count("spawned: 'reporter'") == 2 + supervisor.STARTRETRIES  # the first start, then 1 + 3
    assert "gave up: reporter entered FATAL state" in sup_log
    for stage in ("sampler", "housekeeper"):  # the others were stopped cleanly, not left running
        assert re.search(rf"stopped: {stage} \(exit status 0\)", sup_log), sup_log
        assert not alive(pids[stage])
    rep_log = (d.run_dir / "logs" / "reporter.log").read_text()
    assert "config error: monitoring.report_interval_seconds" in rep_log
    print(f"lagmon run exited 2 {took:.1f} s after the broken restart")


@pytest.mark.supervisord
def test_an_unusable_database_makes_lagmon_run_exit_3(deploy):
    base = short_dir()
    config = unreachable_config(base)
    foreign = b"not a database, someone else's file\n" * 50
    (base / "state.db").write_bytes(foreign)
    started = time.monotonic()
    d = deploy(config, base / "run")
    try:
        code = d.proc.wait(FATAL_TIMEOUT + supervisor.STOPWAITSECS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"lagmon run still running with every stage failing\n{d.logs()}") from None
    took = time.monotonic() - started
    assert code == 3, d.logs()
    sup_log = (d.run_dir / "logs" / "supervisord.log").read_text()
    assert "exit status 3; not expected" in sup_log and "entered FATAL state" in sup_log
    assert "database error" in (d.run_dir / "logs" / "sampler.log").read_text()
    assert (base / "state.db").read_bytes() == foreign  # untouched
    assert not (base / "lag.json").exists()
    print(f"lagmon run exited 3 {took:.1f} s after it started")


def test_lagmon_run_refuses_a_socket_path_too_long(tmp_path):
    base = short_dir()
    config = unreachable_config(base)
    run_dir = base / ("x" * 120)
    out = subprocess.run(
        [sys.executable, "-m", "lagmon", "run", "--config", str(config), "--run-dir", str(run_dir)],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=30,
    )
    shutil.rmtree(base, ignore_errors=True)
    assert out.returncode == 2 and "longer than 107 bytes" in out.stderr, out.stderr


def test_lagmon_run_bad_config_exit_2_without_starting_supervisord(tmp_path):
    base = short_dir()
    config = base / "config.yaml"
    config.write_text("kafka: {bootstrap_servers: ''}\n")
    out = subprocess.run(
        [sys.executable, "-m", "lagmon", "run", "--config", str(config), "--run-dir", str(base / "run")],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "config error" in out.stderr, out.stderr
    assert not (base / "run").exists()
    shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- the committed supervisord.conf


def test_committed_supervisord_conf_has_no_drift():
    committed = (REPO / "supervisord.conf").read_text()
    assert committed == supervisor.render(supervisor.CHECKOUT), (
        "supervisord.conf differs from lagmon.supervisor.render(CHECKOUT); "
        "regenerate it with `python -m lagmon.supervisor > supervisord.conf`"
    )
    out = subprocess.run(
        [sys.executable, "-m", "lagmon.supervisor"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and out.stdout == committed


def test_committed_supervisord_conf_parses_with_supervisors_own_options(monkeypatch):
    from supervisor.datatypes import RestartUnconditionally
    from supervisor.options import ServerOptions

    monkeypatch.setenv("LAGMON_CONFIG", "/etc/lagmon/my config.yaml")  # a space survives the split
    opts = ServerOptions()
    opts.realize(args=["-c", str(REPO / "supervisord.conf")])
    programs = {p.name: p for g in opts.process_group_configs for p in g.process_configs}
    assert [g.name for g in opts.process_group_configs] == ["lagmon"]
    assert set(programs) == set(STAGES)
    for stage, p in programs.items():
        assert shlex.split(p.command) == [
            f"{REPO}/.venv/bin/python", "-m", f"processes.{stage}", "--config", "/etc/lagmon/my config.yaml"
        ]  # fmt: skip
        assert p.directory == str(REPO)
        assert (p.startsecs, p.startretries, p.stopwaitsecs) == (
            supervisor.STARTSECS,
            supervisor.STARTRETRIES,
            supervisor.STOPWAITSECS,
        )
        assert p.stopsignal == signal.SIGTERM and p.stopasgroup and p.killasgroup
        assert p.autorestart is RestartUnconditionally
    assert opts.serverurl == f"unix://{REPO}/run/supervisor.sock"
    assert len(f"{REPO}/run/supervisor.sock".encode()) <= 107


def checkout_copy(base: Path) -> Path:
    """The checkout layout the static conf expects: supervisord.conf, .venv, logs/, run/."""
    shutil.copy(REPO / "supervisord.conf", base / "supervisord.conf")
    (base / ".venv").symlink_to(REPO / ".venv")
    (base / "logs").mkdir()
    (base / "run").mkdir()
    return base / "supervisord.conf"


@pytest.mark.supervisord
def test_checkout_supervisord_conf_runs_and_a_broken_config_goes_fatal():
    base = short_dir()
    conf = checkout_copy(base)
    broken = base / "broken.yaml"
    broken.write_text("kafka:\n  bootstrap_servers: [unclosed\n")
    good = unreachable_config(base / "cfg")
    proc = subprocess.Popen(
        [str(BIN / "supervisord"), "-n", "-c", str(conf)],
        cwd=base,
        env={**os.environ, "LAGMON_CONFIG": str(broken)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        started = time.monotonic()
        wait_states(conf, {s: "FATAL" for s in STAGES}, FATAL_TIMEOUT)
        took = time.monotonic() - started
        sup_log = (base / "logs" / "supervisord.log").read_text()
        for stage in STAGES:
            assert f"gave up: {stage} entered FATAL state" in sup_log
            assert re.search(rf"exited: {stage} \(exit status 2; not expected\)", sup_log)
            assert "config error" in (base / "logs" / f"{stage}.log").read_text()
        # the same conf with a good config: all three come up (the sampler retries the absent broker)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        proc = subprocess.Popen(
            [str(BIN / "supervisord"), "-n", "-c", str(conf)],
            cwd=base,
            env={**os.environ, "LAGMON_CONFIG": str(good)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        pids = wait_running(conf)
        assert all(alive(p) for p in pids.values())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not any(alive(p) for p in pids.values())
        print(f"all three FATAL {took:.1f} s after supervisord started")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(base, ignore_errors=True)

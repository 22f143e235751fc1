"""Chaos under traffic (issue 11, "Done when"): a real `lagmon run` against the real broker,
real producers and consumers, and for CHAOS_SECONDS random SIGKILLs of the stages plus, twice,
of supervisord itself, each followed by a new `lagmon run` on the same run dir and database.

After it: exactly one process per stage and nothing left of the killed generations (the
instance lock and the parent watch guarantee it), `PRAGMA integrity_check` ok, every lag.json
read was valid JSON with the spec's fields, and the final lags are within TOLERANCE of the
truth, judged as tests/test_e2e.py does: the truth (recorded every 0.2 s) over the window the
report's data covers, [read - (REPORT + SAMPLE + COMMIT), read].
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest

from lagmon import supervisor
from lagmon.store import Store
from testing.stages import write_config
from testing.traffic import LagConsumer, SteadyProducer, TruthRecorder, create_topic, unique, wait_for
from tests.test_supervisord import (
    Deployment,
    alive,
    cmdlines,
    descendants,
    short_dir,
    stage_pid,
    states,
    strays,
    supervisord_pid,
    wait_running,
)

STAGES = supervisor.STAGES
CHAOS_SECONDS = 60.0
SUPERVISORD_KILLS_AT = (20.0, 40.0)  # seconds into the chaos
SAMPLE, REPORT, COMMIT = 1.0, 1.0, 0.5  # testing.stages FAST_MONITORING; LagConsumer commits every 0.5 s
TOLERANCE = SAMPLE + 0.5 + 0.5  # one head bracket, int rounding, recorder period and jitter: 2 s
CONSUMER_FIELDS = {
    "group_id": str,
    "topic": str,
    "lag_seconds": int,
    "lag_display": str,
    "worst_partition": (int, type(None)),
    "status": str,
    "data_resolution": str,
    "partitions_monitored": int,
    "calculated_at": str,
    "lag_lower_bound": bool,
}


def spec_problem(report: object) -> str | None:
    """Why a parsed lag.json does not have the spec's shape, or None."""
    if not isinstance(report, dict) or not isinstance(report.get("generated_at"), str):
        return "no generated_at"
    if not isinstance(report.get("consumers"), list):
        return "no consumers list"
    monitor = report.get("monitor")
    if not isinstance(monitor, dict) or not isinstance(monitor.get("stale"), bool):
        return "no monitor.stale"
    for c in report["consumers"]:
        for name, kind in CONSUMER_FIELDS.items():
            if not isinstance(c.get(name), kind) or (kind is int and isinstance(c.get(name), bool)):
                return f"consumer field {name} is {c.get(name)!r}"
        if c["lag_seconds"] < 0 or c["status"] not in ("online", "offline", "recovering"):
            return f"bad consumer {c}"
    return None


class SpecReader(threading.Thread):
    """Parses lag.json every 50 ms and checks the spec's fields; keeps (read time, report)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path = path
        self.stop_event = threading.Event()
        self.reads = 0
        self.errors: list[str] = []
        self.latest: tuple[float, dict] | None = None

    def run(self) -> None:
        while not self.stop_event.wait(0.05):
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                if self.latest is not None:
                    self.errors.append("lag.json disappeared")
                continue
            read_at = time.time()
            try:
                report = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                self.errors.append(f"invalid JSON ({exc}); {len(data)} bytes: {data[:80]!r}")
                continue
            problem = spec_problem(report)
            if problem:
                self.errors.append(f"{problem}: {data[:200]!r}")
                continue
            self.reads += 1
            self.latest = (read_at, report)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)


def stage_processes(config: Path) -> dict[str, list[int]]:
    """stage -> the pids of every live `processes.<stage> --config CONFIG` on the machine."""
    cmds = cmdlines()
    return {
        s: sorted(p for p, c in cmds.items() if f"processes.{s} --config {config}" in c and alive(p))
        for s in STAGES
    }


@pytest.mark.supervisord
@pytest.mark.kafka
def test_chaos_sigkill_stages_and_supervisord_under_traffic(kafka_bootstrap):
    rng = random.Random()
    topic, laggard, live = unique("chaos"), unique("chaos-laggard"), unique("chaos-live")
    create_topic(kafka_bootstrap, topic, 2)
    producer = SteadyProducer(kafka_bootstrap, topic, 2, rate=20)
    consumers = [
        LagConsumer(kafka_bootstrap, laggard, topic, delay=10.0),
        LagConsumer(kafka_bootstrap, live, topic),
    ]
    pairs = [(laggard, topic), (live, topic)]
    truth = TruthRecorder(kafka_bootstrap, pairs)
    base = short_dir()
    config = write_config(base, kafka_bootstrap)
    run_dir = base / "run"
    reader = SpecReader(base / "lag.json")
    deployments: list[Deployment] = []
    seen: set[int] = set()  # every process of every generation, to check none survives
    kills = {"stage": 0, "supervisord": 0}

    def start() -> Deployment:
        d = Deployment(config, run_dir, cwd=base)
        deployments.append(d)
        wait_running(d.conf)
        return d

    def remember(d: Deployment) -> None:
        if d.proc.poll() is None:
            seen.update(descendants(d.proc.pid))

    for t in [producer, *consumers, truth]:
        t.start()
    try:
        d = start()
        reader.start()
        wait_for(
            lambda: (
                reader.latest
                and any(
                    c["group_id"] == laggard and c["lag_seconds"] >= 5 for c in reader.latest[1]["consumers"]
                )
            ),
            90,
            what=f"{laggard} about 10 s behind in lag.json",
        )

        # the chaos
        chaos_start = time.monotonic()
        pending = list(SUPERVISORD_KILLS_AT)
        while (elapsed := time.monotonic() - chaos_start) < CHAOS_SECONDS:
            remember(d)
            if pending and elapsed >= pending[0]:
                pending.pop(0)
                sup = supervisord_pid(d)
                signal_pid(sup)
                kills["supervisord"] += 1
                assert d.proc.wait(15) == -signal.SIGKILL, d.logs()  # supervisord is lagmon run
                d = start()  # waits (bounded) for the orphans to release the database
            else:
                # Only a stage supervisord counts as started (RUNNING, after startsecs): killing
                # one again within startsecs of its restart is a failed start to supervisord, and
                # four of those make it FATAL, which `lagmon run` rightly turns into an exit.
                running = sorted(st for st, state in states(d.conf).items() if state == "RUNNING")
                stage = rng.choice(running) if running else None
                pid = stage_pid(d.conf, stage) if stage else 0
                if pid:
                    signal_pid(pid)
                    kills["stage"] += 1
            time.sleep(rng.uniform(2.0, 4.0))
        remember(d)

        # after it: one process per stage, the supervised one; nothing left of earlier generations
        pids = wait_running(d.conf)
        remember(d)
        wait_for(
            lambda: stage_processes(config) == {s: [pids[s]] for s in STAGES},
            15,
            interval=0.2,
            what="exactly one process per stage",
        )
        current = set(descendants(d.proc.pid))
        try:
            wait_for(
                lambda: not [p for p in seen - current if alive(p)],
                15,
                interval=0.2,
                what="every process of the killed generations to exit",
            )
        except TimeoutError:
            left = {p: c for p, c in cmdlines().items() if p in seen - current and alive(p)}
            raise AssertionError(f"processes of killed generations still alive: {left}") from None

        # the lags, once the last restart has settled: within TOLERANCE of the truth
        wait_for(
            lambda: (
                reader.latest
                and not reader.latest[1]["monitor"]["stale"]
                and reader.latest[0] > time.time() - 1
            ),
            60,
            what="a fresh report",
        )
        time.sleep(12)  # a sampler restarted last needs the laggard's 10 s of head history again
        worst = 0.0
        for _ in range(5):
            read_at, report = reader.latest
            for pair in pairs:
                row = next((c for c in report["consumers"] if (c["group_id"], c["topic"]) == pair), None)
                assert row is not None, f"{pair} missing from {report}"
                rng_truth = truth.window(pair, read_at - (REPORT + SAMPLE + COMMIT), read_at)
                assert rng_truth is not None, f"no truth recorded for {pair}"
                lo, hi = rng_truth
                err = max(0.0, lo - row["lag_seconds"], row["lag_seconds"] - hi - SAMPLE)
                assert err <= TOLERANCE, (
                    f"{pair}: reported {row['lag_seconds']} s, truth {lo:.2f}..{hi:.2f} s"
                )
                worst = max(worst, err)
            time.sleep(1.0)
    except BaseException:
        for dep in deployments[-2:]:
            print(dep.logs())
        raise
    finally:
        reader.stop()
        for t in [*consumers, producer, truth]:
            t.stop()
        for dep in deployments:
            if dep.proc.poll() is None:
                dep.terminate(90)
            dep.kill()

    assert deployments[-1].proc.returncode == 0
    leftover = strays(run_dir, config)
    assert leftover == {}, leftover
    assert reader.errors == [], reader.errors[:5]
    assert reader.reads > 500
    with Store(str(base / "state.db")) as store:
        assert store.integrity_check() == "ok"
    print(
        f"chaos: {kills['stage']} stage SIGKILLs, {kills['supervisord']} supervisord SIGKILLs, "
        f"{len(deployments)} lagmon runs, {reader.reads} valid lag.json reads, 0 invalid, "
        f"{len(seen)} processes seen, worst lag error {worst:.2f} s"
    )


def signal_pid(pid: int) -> None:
    """SIGKILL a pid this test started (a stage or supervisord), if it is still there."""
    import os

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

"""Restart equivalence: the database is the sampler's only memory that matters.

On the same recorded history (tests/simcluster.py's SimCluster: the same heads, commits and
message timestamps at the same simulated instants), a sampler that is stopped, or that dies
in the middle of a sample, and is replaced by a NEW Sampler object on a NEW Store opened on
the same database file, must leave the same lags as a sampler that never stopped: per
group/topic, lag_seconds, worst_partition and status as stored (group_status) and as the
reporter builds them (Reporter.rows), at every sample after the restart.

A sampler that died mid-sample is restarted at the instant of the sample it died in (the
cluster replays that instant's answers), as a supervisord restart that samples at once does;
from that sample on, its lags must equal the never-stopped sampler's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lagmon import config as lagconfig
from lagmon.kafka import KafkaSource
from lagmon.stages.reporter import Reporter
from lagmon.stages.sampler import Sampler
from lagmon.store import Store
from tests.helpers import Clock, make_config, write_config
from tests.simcluster import HOUR, MIN, T0, SimCluster

REPO = Path(__file__).resolve().parent.parent

SAMPLE = 30.0
MONITORING = {
    "sample_interval_seconds": SAMPLE,
    "offline_sample_interval_seconds": 4 * SAMPLE,
    "report_interval_seconds": SAMPLE,
    "offline_detection_consecutive_samples": 3,
    "online_lag_threshold_seconds": 60,
    "recovering_minimum_duration_seconds": 5 * MIN,
}
# 11h40m .. 12h55m of the simulated cluster: the ghost group disappears at 12h, the flapper
# pauses and resumes, idle and slow partitions get bursts (anchors are read), the archiver lags.
START = T0 + 11 * HOUR + 40 * MIN
STEPS = 150
TIMES = [START + i * SAMPLE for i in range(STEPS)]


class Died(Exception):
    """The sampler process 'dies' here (stands in for a SIGKILL mid-sample)."""


class DyingCluster:
    """SimCluster, but the first call to `die_in` at or after `die_at` raises Died (once)."""

    def __init__(self, cluster: SimCluster, die_in: str, die_at: float):
        self.cluster, self.die_in, self.die_at = cluster, die_in, die_at
        self.died_at: float | None = None

    def _maybe_die(self, name: str) -> None:
        if self.died_at is None and name == self.die_in and self.cluster.now >= self.die_at:
            self.died_at = self.cluster.now
            raise Died(f"died in {name} at {self.cluster.now}")

    def topics(self, *, deadline: float | None = None) -> tuple[dict[str, int], set[str]]:
        self._maybe_die("topics")
        return self.cluster.topics()

    def groups(self, *, deadline: float | None = None) -> tuple[set[str], bool]:
        self._maybe_die("groups")
        return self.cluster.groups()

    def committed(
        self, groups: Iterable[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        self._maybe_die("committed")
        return self.cluster.committed(groups)

    def heads(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> dict[tuple[str, int], int]:
        self._maybe_die("heads")
        return self.cluster.heads(partitions)

    def heads_and_log_starts(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        self._maybe_die("heads")
        return self.cluster.heads_and_log_starts(partitions)

    def message_times(
        self,
        wanted: Iterable[tuple[str, int, int]],
        *,
        budget: float | None = None,
        deadline: float | None = None,
    ) -> dict[tuple[str, int, int], tuple[int, float] | None]:
        wanted = list(wanted)
        self._maybe_die("message_times")
        return self.cluster.message_times(wanted, budget=budget)


if TYPE_CHECKING:  # mypy: the stand-in answers like the real client
    _: KafkaSource = DyingCluster(SimCluster(), "heads", 0.0)


class Run:
    """One sampler 'process' on a database file: a Store, a Sampler and its clock."""

    def __init__(self, cfg, client, cluster: SimCluster):
        self.cfg, self.cluster = cfg, cluster
        self.store = Store(cfg.database.path)
        self.clock = Clock()
        self.sampler = Sampler(cfg, self.store, client, clock=self.clock)

    def step(self, now: float) -> None:
        self.cluster.now = self.clock.t = now
        self.sampler.step(now)

    def lags(self, now: float) -> dict:
        """Per group/topic: (lag_seconds, lag summary (it holds the worst partition), state) as
        stored, and (lag_seconds, worst_partition, status, lower bound) as the reporter builds them."""
        stored = {k: (s.lag_seconds, s.lag_summary, s.state) for k, s in self.store.group_statuses().items()}
        reported = {
            (r.group_id, r.topic): (r.lag_seconds, r.worst_partition, r.status, r.lag_lower_bound)
            for r in Reporter(self.cfg, self.store).rows(now)
        }
        return {"stored": stored, "reported": reported}

    def statuses(self) -> dict:
        return self.store.group_statuses()

    def close(self) -> None:
        self.store.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The never-stopped sampler's lags after every sample (computed once)."""
    tmp = tmp_path_factory.mktemp("never-stopped")
    cluster = SimCluster()
    run = Run(make_config(tmp, monitoring=MONITORING), cluster, cluster)
    lags, statuses, anchors = [], [], 0
    for now in TIMES:
        run.step(now)
        anchors += run.sampler.last_result.anchors_read
        lags.append(run.lags(now))
        statuses.append(run.statuses())
    run.close()
    return lags, statuses, anchors


def test_the_history_is_not_trivial(reference):
    """The history has lagging groups, state changes and anchor reads, so equality means something."""
    lags, _statuses, anchors = reference
    final = lags[-1]["reported"]
    assert anchors > 0
    assert {s for (_lag, _w, s, _lb) in final.values()} >= {"online", "offline"}
    assert any(lag > 60 for (lag, _w, _s, _lb) in final.values())
    assert len({tuple(sorted(x["reported"].items())) for x in lags}) > STEPS // 2  # lags keep changing


# The ghost group disappears from the listings at sample 40: OFFLINE after two complete
# listings without it (samples 40 and 41).
BETWEEN_TWO_ABSENT_LISTINGS = 41


@pytest.mark.parametrize(
    "stop_after",
    [
        1,
        25,
        42,
        100,
        BETWEEN_TWO_ABSENT_LISTINGS,  # the first absent listing is stored, not only remembered
    ],
)
def test_a_stopped_and_restarted_sampler_gives_the_same_lags(tmp_path, reference, stop_after):
    ref_lags, ref_statuses, _ = reference
    cfg = make_config(tmp_path, monitoring=MONITORING)
    cluster = SimCluster()
    first = Run(cfg, cluster, cluster)
    for now in TIMES[:stop_after]:
        first.step(now)
    first.close()
    second = Run(cfg, cluster, cluster)  # a new Sampler on a new Store, same file
    try:
        for i in range(stop_after, STEPS):
            second.step(TIMES[i])
            assert second.lags(TIMES[i]) == ref_lags[i], f"sample {i} after a restart at {stop_after}"
            assert second.statuses() == ref_statuses[i], f"statuses at sample {i}"
    finally:
        second.close()


@pytest.mark.parametrize(
    "die_in, die_after",
    [
        ("heads", 40),  # commits read, nothing written yet this sample
        ("message_times", 1),  # heads and commits written, anchors not read, statuses not saved
        ("message_times", 60),
        ("committed", 90),
    ],
)
def test_a_sampler_that_died_mid_sample_and_restarted_gives_the_same_lags(
    tmp_path, reference, die_in, die_after
):
    ref_lags, _ref_statuses, _ = reference
    cfg = make_config(tmp_path, monitoring=MONITORING)
    cluster = SimCluster()
    dying = DyingCluster(cluster, die_in, TIMES[die_after])
    first = Run(cfg, dying, cluster)
    died_at = None
    for i, now in enumerate(TIMES):
        try:
            first.step(now)
        except Died:
            died_at = i
            break
    first.close()  # what a SIGKILL leaves: only what was committed to the database
    assert died_at is not None and died_at >= die_after, f"the sampler never called {die_in}"
    second = Run(cfg, cluster, cluster)
    try:
        for i in range(died_at, STEPS):  # the restart samples at once: the instant it died in
            second.step(TIMES[i])
            assert second.lags(TIMES[i]) == ref_lags[i], f"sample {i} after dying in {die_in} at {died_at}"
    finally:
        second.close()


class HangingCluster(DyingCluster):
    """In a child process: at the chosen call, write `marker` and hang until SIGKILLed."""

    def __init__(self, cluster: SimCluster, die_in: str, die_at: float, marker: str):
        super().__init__(cluster, die_in, die_at)
        self.marker = marker

    def _maybe_die(self, name: str) -> None:
        if name == self.die_in and self.cluster.now >= self.die_at:
            with open(self.marker, "w") as fh:
                fh.write(str(TIMES.index(self.cluster.now)))
            time.sleep(HANG_SECONDS)  # the parent SIGKILLs this process long before
            raise SystemExit("not killed")


HANG_SECONDS = 120.0


def sample_until_killed(config_path: str, die_in: str, die_after: int, marker: str) -> None:
    """The child process's body: sample TIMES until HangingCluster hangs (and is killed)."""
    cfg = lagconfig.load(config_path)
    cluster = SimCluster()
    run = Run(cfg, HangingCluster(cluster, die_in, TIMES[die_after], marker), cluster)
    for now in TIMES:
        run.step(now)


@pytest.mark.parametrize("die_in, die_after", [("message_times", 1), ("heads", 70)])
def test_a_sampler_process_sigkilled_mid_sample_and_restarted_gives_the_same_lags(
    tmp_path, reference, die_in, die_after
):
    """The same with a real process death: the sampler runs in a child process over the
    scripted cluster and is SIGKILLed while it waits in a client call, mid-sample."""
    ref_lags, _ref_statuses, _ = reference
    config_path = write_config(tmp_path, fast=False, monitoring=MONITORING)
    marker = tmp_path / "hanging"
    code = (
        "import sys; from tests.test_restart_equivalence import sample_until_killed as s; "
        "s(*sys.argv[1:3], int(sys.argv[3]), sys.argv[4])"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(config_path), die_in, str(die_after), str(marker)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the child never reached {die_in} (exit {child.poll()})"
    finally:
        child.kill()  # SIGKILL: nothing is closed or rolled back by the sampler itself
        child.wait(30)
    died_at = int(marker.read_text())
    assert died_at >= die_after
    cfg = lagconfig.load(str(config_path))
    cluster = SimCluster()
    second = Run(cfg, cluster, cluster)
    try:
        for i in range(died_at, STEPS):
            second.step(TIMES[i])
            assert second.lags(TIMES[i]) == ref_lags[i], (
                f"sample {i} after a SIGKILL in {die_in} at {died_at}"
            )
    finally:
        second.close()


# The sampler keeps the rows its lag inputs are read from in memory (lagmon.store.cache) and
# reloads them when another process (the housekeeper) changed them: with the housekeeper
# thinning the history between samples, a sampler that never stops (whose lag inputs come from
# memory) and one restarted before every sample (whose memory is always freshly loaded from the
# file) must leave the same lags.
HOUSEKEEPING = {**MONITORING, "max_entries_per_partition": 12, "max_commit_entries_per_partition": 6}
HOUSEKEEP_EVERY = 7


def test_a_sampler_restarted_before_every_sample_gives_the_never_stopped_lags_while_history_is_thinned(
    tmp_path,
):
    from lagmon.stages.housekeeper import Housekeeper

    (tmp_path / "kept").mkdir()
    (tmp_path / "cold").mkdir()
    kept = make_config(tmp_path / "kept", monitoring=HOUSEKEEPING)
    cold = make_config(tmp_path / "cold", monitoring=HOUSEKEEPING)
    kept_cluster, cold_cluster = SimCluster(), SimCluster()
    never_stopped = Run(kept, kept_cluster, kept_cluster)
    from_memory = thinned = 0
    try:
        for i, now in enumerate(TIMES):
            never_stopped.step(now)
            restarted = Run(cold, cold_cluster, cold_cluster)  # a new Sampler on a new Store
            try:
                restarted.step(now)
                assert restarted.lags(now) == never_stopped.lags(now), f"sample {i}"
                assert restarted.statuses() == never_stopped.statuses(), f"statuses at sample {i}"
            finally:
                restarted.close()
            brackets = never_stopped.store._brackets
            assert brackets is not None
            from_memory += len(brackets.inputs(never_stopped.statuses())[0])
            if i % HOUSEKEEP_EVERY == HOUSEKEEP_EVERY - 1:
                for cfg in (kept, cold):
                    housekeeper_store = Store(cfg.database.path)
                    try:
                        before = housekeeper_store._conn.execute(
                            "SELECT count(*) FROM partition_offsets"
                        ).fetchone()
                        Housekeeper(cfg, housekeeper_store).step(now)
                        after = housekeeper_store._conn.execute(
                            "SELECT count(*) FROM partition_offsets"
                        ).fetchone()
                        thinned += before[0] - after[0]
                    finally:
                        housekeeper_store.close()
    finally:
        never_stopped.close()
    assert thinned > 0 and from_memory > 0  # the history was thinned, and memory answered

"""The sampler stage: one sample of the cluster each pass.

`python -m processes.sampler --config PATH [--debug] [--once]` (or `lagmon-sampler`) runs main().

Order matters (time-lag.md): committed offsets FIRST, then head offsets, so a
committed offset never exceeds the head it is compared with. All groups'
offset requests go out at once and the heads come from one batched call.

Scheduling: every sample (each sample_interval_seconds) fetches the committed offsets of
EVERY listed group, in the one burst of requests already in flight. What is stored and
evaluated is per group/topic by state: ONLINE at every sample; OFFLINE and RECOVERING every
offline_sample_interval_seconds ("coarse sampling": the commits stored and the states
evaluated for a group/topic whose commit did not move), or at once when its commit moved
or a new topic of the group appears, so a resumed group or a new topic is seen within one
fine interval. A topic's heads are sampled whenever any of its group/topics is sampled,
and at least every offline interval when nothing consumes it.

The schedule runs on the step's own clock made monotonic (`_schedule_time`): a wall-clock
step back or forward costs at most one interval, and what is loaded from the database is
clamped to one interval from now.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from lagmon import states
from lagmon.kafka import IsolatedKafkaClient, KafkaUnavailable
from lagmon.stages import figures_io
from lagmon.stages.evaluate import MAX_ANCHOR_READS, update_states
from lagmon.stages.listing import INTERNAL_TOPICS, Listing, matching_pattern, split_excluded
from lagmon.stages.runtime import printable, stage_main
from lagmon.store import GroupStatus

__all__ = [
    "INTERNAL_TOPICS",
    "MAX_ANCHOR_READS",
    "SampleResult",
    "Sampler",
    "matching_pattern",
    "split_excluded",
]

GroupTopic = tuple[str, str]
Commits = dict[tuple[str, str, int], int]  # (group, topic, partition) -> committed offset


@dataclass
class SampleResult:
    """What one pass did; logged at debug and used by tests and benchmarks."""

    groups_sampled: int = 0
    partitions: int = 0
    transitions: list = field(default_factory=list)
    anchors_read: int = 0
    deleted_topics: list = field(default_factory=list)
    reset_partitions: list = field(default_factory=list)


class Sampler(Listing):
    """Samples the cluster into the store and runs the state machine."""

    def __init__(self, cfg, store, client, log: logging.Logger | None = None, *, clock=time.time):
        self.cfg = cfg
        # Heads and commits are stamped with the wall time of their own request
        # (midpoint), not the step's start: that is when Kafka answered.
        self._wall = clock
        self.mon = cfg.monitoring
        self.store = store
        store.enable_brackets()  # the lag inputs' rows mirrored in memory (lagmon.store.cache)
        self.client = client
        self.log = log or logging.getLogger("lagmon.sampler")
        self.thresholds = states.Thresholds.from_monitoring(self.mon)
        self.statuses: dict[tuple[str, str], GroupStatus] = store.group_statuses()
        # Last time each topic's heads were sampled (restored from the store).
        self.topic_sampled: dict[str, float] = {}
        for (topic, _p), row in store.latest_heads().items():
            self.topic_sampled[topic] = max(self.topic_sampled.get(topic, 0.0), row.last_seen)
        self.anchored: set[tuple[str, int, int]] = set()
        self.anchor_batch = MAX_ANCHOR_READS  # halved while a batch overruns its budget
        self._present: set[str] = set()
        self._start_listing()
        self.last_result = SampleResult()
        self.log_starts: dict[tuple[str, int], int] = {}  # of the latest heads fetch (figures)
        # The schedule (see the module docstring): a monotonic time built from the steps' `now`,
        # when each group/topic is next due for storing and evaluating on it, and the last
        # commits fetched per partition (to tell a moved commit from a static one).
        self._sched: float | None = None
        self._last_now: float | None = None
        self._due: dict[tuple[str, str], float] = {}
        # What was last stored is what was last fetched for every pair not chosen since (an
        # unchosen pair's commit did not move), so a restarted sampler tells moved from static
        # exactly as one that never stopped.
        self._seen_commits: Commits = store.latest_commit_offsets()

    # ----------------------------------------------------------------- helpers
    def interval(self, state: str) -> float:
        return states.sample_interval(
            states.State(state),
            self.mon.sample_interval_seconds,
            self.mon.offline_sample_interval_seconds,
        )

    def _schedule_time(self, now: float) -> float:
        """A clock that follows `now` forward and never goes back: a wall-clock step back
        leaves it where it was, and from there it moves with `now` again."""
        if self._sched is None or self._last_now is None:
            self._sched = now
        else:
            self._sched += max(0.0, now - self._last_now)
        self._last_now = now
        return self._sched

    def _due_at(self, key: GroupTopic, status: GroupStatus | None, now: float, sched: float) -> float:
        """When a group/topic is due on the schedule clock; from the database's next_sample
        (wall time) the first time, clamped into [now, now + its interval]."""
        due = self._due.get(key)
        if due is None:
            if status is None or status.next_sample is None:
                due = sched
            else:
                ahead = min(max(0.0, status.next_sample - now), self.interval(status.state))
                due = sched + ahead
            self._due[key] = due
        return due

    def _choose(
        self, commits: Commits, answered: set[GroupTopic], now: float, sched: float
    ) -> tuple[Commits, set[GroupTopic]]:
        """The group/topics this sample stores and evaluates, and their commits: every
        ONLINE or new one, and an OFFLINE/RECOVERING one when its coarse interval is due or
        its commit moved since the last fetch (a resumed group, a new partition)."""
        seen = self._seen_commits
        moved = {k[:2] for k, o in commits.items() if seen.get(k) != o}
        # A fetched group's commits replace what was seen of it (in place: no copy per sample).
        fetched_groups = {g for (g, _t) in answered}
        for k in [k for k in seen if k[0] in fetched_groups and k not in commits]:
            del seen[k]
        seen.update(commits)
        horizon = sched + 0.05 * self.mon.sample_interval_seconds  # a wake-up a little early
        chosen: set[GroupTopic] = set()
        for key in answered:
            status = self.statuses.get(key)
            fine = status is None or status.state == states.State.ONLINE.value or key in moved
            if fine or self._due_at(key, status, now, sched) <= horizon:
                chosen.add(key)
        kept = (
            commits if len(chosen) == len(answered) else {k: o for k, o in commits.items() if k[:2] in chosen}
        )
        self._due = {k: v for k, v in self._due.items() if k in self.statuses}
        return kept, chosen

    # -------------------------------------------------------------------- step
    def step(self, now: float) -> float:
        """One sample: 1. list topics and groups, 2. fetch the due groups' commits, 3. fetch the
        heads (after the commits), 4. evaluate lags and states. Returns the seconds until the
        next sample is due."""
        result = SampleResult()
        started = self._wall()
        sched = self._schedule_time(now)
        topics, groups = self._list(now, result)
        fetched, answered, commit_at, groups_answered = self._fetch_commits(sorted(groups), topics)
        commits, sampled_keys = self._choose(fetched, answered, now, sched)
        self._fetch_heads(topics, {t for (_g, t) in sampled_keys}, now, result)
        at = max(now, self._wall())  # the data holds from here: after the commits and the heads
        advanced = self.store.record_commits(commits, commit_at) if commits else set()
        update_states(self, sampled_keys, advanced, at, result)
        for key in sampled_keys:
            self._due[key] = sched + self.interval(self.statuses[key].state)
        self._save_listing()
        result.groups_sampled = groups_answered
        self.last_result = result
        self.log.debug(
            "sampled %d groups, %d partitions in %.3fs (%d transitions, %d anchors read)",
            result.groups_sampled,
            result.partitions,
            self._wall() - started,
            len(result.transitions),
            result.anchors_read,
        )
        if groups and not groups_answered:
            # Not a healthy sample: the heartbeat shows this error, and lag.json goes stale.
            raise KafkaUnavailable(
                f"none of the {len(groups)} listed group(s) answered its committed-offsets request: "
                "this sample holds no group's position"
            )
        return self._next_delay(now)

    def _fetch_commits(
        self, due: list[str], topics: dict[str, int]
    ) -> tuple[Commits, set[GroupTopic], float, int]:
        """2. committed offsets, every listed group in flight at once. Returns the valid commits,
        the group/topics they cover, when they were read and how many groups answered."""
        t0 = self._wall()
        committed, errors = self.client.committed(due, deadline=self.deadline) if due else ({}, {})
        commit_at = (t0 + self._wall()) / 2
        for group, err in errors.items():
            self.log.debug("committed offsets of group %s failed: %s", printable(group), printable(err))
        commits: Commits = {}
        sampled_keys: set[GroupTopic] = set()
        for group, offsets in committed.items():
            for (topic, partition), offset in offsets.items():
                if topic in topics and 0 <= partition < topics[topic] and offset >= 0:
                    commits[(group, topic, partition)] = offset
                    sampled_keys.add((group, topic))
        self._note_missing_commits(committed, sampled_keys, topics, commit_at)
        return commits, sampled_keys, commit_at, len(committed)

    def _fetch_heads(
        self, topics: dict[str, int], head_topics: set[str], now: float, result: SampleResult
    ) -> None:
        """3. heads, one batched call, for the topics of due groups and the topics not sampled
        for an offline interval."""
        for topic in topics:
            if now - self.topic_sampled.get(topic, 0.0) >= self.mon.offline_sample_interval_seconds:
                head_topics.add(topic)
        partitions = [(t, p) for t in sorted(head_topics) for p in range(topics[t])]
        if not partitions:
            return
        t1 = self._wall()
        heads, self.log_starts = self.client.heads_and_log_starts(partitions, deadline=self.deadline)
        head_at = (t1 + self._wall()) / 2
        result.reset_partitions = self.store.record_heads(heads, head_at)
        for topic, partition in result.reset_partitions:
            self.log.warning(
                "head of %s[%d] went down: topic recreated or truncated, history restarted",
                printable(topic),
                partition,
            )
        for topic in head_topics:
            self.topic_sampled[topic] = head_at
        result.partitions = len(heads)

    def _next_delay(self, now: float) -> float:
        """Seconds until the next sample: one sample interval (counted by the runtime from this
        step's start). Every sample fetches every listed group's commits, so a group/topic that
        is never sampled again (excluded, its offsets deleted, its fetch failing) or a status
        loaded with a past next_sample cannot make the loop run faster; an OFFLINE group/topic
        falls due at the first sample after its coarse interval."""
        return max(float(self.mon.sample_interval_seconds), 0.0)


def make_step(cfg, store, log):
    sampler = Sampler(cfg, store, IsolatedKafkaClient(cfg.kafka, logger=log), log)
    return figures_io.Instrumented(sampler.step, store, log), cfg.monitoring.sample_interval_seconds


def main(argv: list[str] | None = None) -> int:
    return stage_main("sampler", make_step, argv)

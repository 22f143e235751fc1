"""The sampler stage: one sample of the cluster each pass.

`python -m processes.sampler --config PATH [--debug] [--once]` (or `lagmon-sampler`) runs main().

Order matters (time-lag.md): committed offsets FIRST, then head offsets, so a
committed offset never exceeds the head it is compared with. All groups'
offset requests go out at once and the heads come from one batched call.

Scheduling is per group/topic by state: ONLINE every sample_interval_seconds,
OFFLINE and RECOVERING every offline_sample_interval_seconds. A topic's heads
are sampled whenever any of its groups is due (the finest rate any of them
needs), and at least every offline interval when nothing consumes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from lagmon import states, timelag
from lagmon.kafka import IsolatedKafkaClient
from lagmon.stages.listing import INTERNAL_TOPICS, Listing, matching_pattern, split_excluded
from lagmon.stages.runtime import printable, stage_main
from lagmon.store import GroupStatus, Transition

__all__ = ["INTERNAL_TOPICS", "SampleResult", "Sampler", "matching_pattern", "split_excluded"]

# Message-timestamp reads (anchors) per sample are bounded in count and time, so
# a first start on a big cluster or a mass reset to earliest cannot stall a sample:
# what is not read now is read at the next sample.
MAX_ANCHOR_READS = 20_000
ANCHOR_BUDGET_MIN, ANCHOR_BUDGET_MAX = 2.0, 10.0

GroupTopic = tuple[str, str]
Commits = dict[tuple[str, str, int], int]  # (group, topic, partition) -> committed offset


def _below_history(inp) -> bool:
    """The commit is older than every head row: only its message's timestamp dates it."""
    return inp.oldest_head is not None and inp.committed < inp.oldest_head[0]


def _at_an_idle_head(inp) -> bool:
    """The commit is at a head offset the partition sat at for more than one sample, or a
    static commit that new messages passed only after its latest sample: an idle partition,
    then a burst. The message at the commit was appended at some instant between two head
    samples that interpolation cannot tell, so its timestamp is read once instead of erring
    by up to a sampling interval. (A head that moves at every sample spreads its messages
    over the interval, where interpolation is right; those are not read.)"""
    c = inp.committed
    if inp.head_below is None or inp.head_below[0] != c or inp.newest_head is None or c >= inp.newest_head:
        return False
    if inp.head_below_since is not None and inp.head_below_since < inp.head_below[1]:
        return True
    if not inp.commit_last_seen > inp.commit_first_seen:
        return False
    seen_above = timelag.overtaken_at(inp)
    return seen_above is not None and seen_above > inp.commit_last_seen


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
        self.client = client
        self.log = log or logging.getLogger("lagmon.sampler")
        self.thresholds = states.Thresholds.from_monitoring(self.mon)
        self.statuses: dict[tuple[str, str], GroupStatus] = store.group_statuses()
        # Last time each topic's heads were sampled (restored from the store).
        self.topic_sampled: dict[str, float] = {}
        for (topic, _p), row in store.latest_heads().items():
            self.topic_sampled[topic] = max(self.topic_sampled.get(topic, 0.0), row.last_seen)
        self.anchored: set[tuple[str, int, int]] = set()
        self._present: set[str] = set()
        self._missing_once: set[str] = set()
        self._start_listing()
        self.last_result = SampleResult()

    # ----------------------------------------------------------------- helpers
    def _due_groups(self, groups: set[str], now: float) -> list[str]:
        """Groups with any group/topic due, and new groups (their topics are unknown yet)."""
        # Slack so a wake-up a few milliseconds early does not skip a whole interval.
        horizon = now + 0.05 * self.mon.sample_interval_seconds
        next_due: dict[str, float] = {}
        for (group, _topic), status in self.statuses.items():
            due_at = status.next_sample if status.next_sample is not None else now
            next_due[group] = min(next_due.get(group, due_at), due_at)
        return sorted(g for g in groups if next_due.get(g, now) <= horizon)

    def _interval(self, state: str) -> float:
        return states.sample_interval(
            states.State(state),
            self.mon.sample_interval_seconds,
            self.mon.offline_sample_interval_seconds,
        )

    # -------------------------------------------------------------------- step
    def step(self, now: float) -> float:
        """One sample: 1. list topics and groups, 2. fetch the due groups' commits, 3. fetch the
        heads (after the commits), 4. evaluate lags and states. Returns the seconds until the
        next sample is due."""
        result = SampleResult()
        started = self._wall()
        topics, groups = self._list(now, result)
        due = self._due_groups(groups, now)
        commits, sampled_keys, commit_at, groups_answered = self._fetch_commits(due, topics)
        self._fetch_heads(topics, {t for (_g, t) in sampled_keys}, now, result)
        advanced = self.store.record_commits(commits, commit_at) if commits else set()
        self._update_states(sampled_keys, advanced, now, result)
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
        return self._next_delay(now)

    def _fetch_commits(
        self, due: list[str], topics: dict[str, int]
    ) -> tuple[Commits, set[GroupTopic], float, int]:
        """2. committed offsets, every due group in flight at once. Returns the valid commits,
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
        heads = self.client.heads(partitions, deadline=self.deadline)
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

    def _read_anchors(self, inputs, result: SampleResult) -> set[tuple[str, str]]:
        """Read the message timestamp at commits that fall below the head history or sit at an
        idle head, all in one batch; returns the group/topics that got new anchors."""
        wanted: dict[tuple[str, int, int], None] = {}
        owners: dict[tuple[str, int, int], set[tuple[str, str]]] = {}
        for inp in inputs:
            if len(wanted) >= MAX_ANCHOR_READS:
                break
            if not (_below_history(inp) or _at_an_idle_head(inp)):
                continue
            if inp.anchor_below is not None and inp.anchor_below[0] == inp.committed:
                continue
            key = (inp.topic, inp.partition, inp.committed)
            if key not in self.anchored:
                wanted[key] = None
                owners.setdefault(key, set()).add((inp.group_id, inp.topic))
        if not wanted:
            return set()
        if len(self.anchored) > MAX_ANCHOR_READS * 5:
            self.anchored.clear()  # bounded memory; at worst an anchor is read once more
        budget = min(ANCHOR_BUDGET_MAX, max(ANCHOR_BUDGET_MIN, self.mon.sample_interval_seconds / 2))
        found = self.client.message_times(list(wanted), budget=budget, deadline=self.deadline)
        result.anchors_read = len(found)
        anchors, gone, touched = [], 0, set()
        for (topic, partition, committed), answer in found.items():
            self.anchored.add((topic, partition, committed))
            if answer is None:
                continue
            offset, ts = answer
            anchors.append((topic, partition, offset, ts, offset == committed))
            gone += offset != committed
            touched |= owners[(topic, partition, committed)]
        self.store.put_anchors(anchors)
        self.log.info(
            "anchored %d commits on their messages' timestamps%s",
            len(anchors),
            f" ({gone} messages gone: those lags are lower bounds)" if gone else "",
        )
        return touched

    def _update_states(self, keys, advanced, now, result: SampleResult) -> None:
        """4. evaluate: lag at sample time (anchors read where needed), then each state."""
        if not keys:
            return
        inputs = self.store.lag_inputs(keys)
        touched = self._read_anchors(inputs, result)
        if touched:  # only those group/topics need their inputs again, now with anchors
            inputs = [i for i in inputs if (i.group_id, i.topic) not in touched] + self.store.lag_inputs(
                touched
            )
        summaries = timelag.group_summaries(inputs, keys)
        lags = {k: timelag.group_lag_at(v, now) for k, v in summaries.items()}
        moved = {(g, t) for (g, t, _p) in advanced}
        rows: list[GroupStatus] = []
        transitions: list[Transition] = []
        for key in sorted(keys):
            lag = lags.get(key)
            lag_seconds = lag.seconds if lag is not None else 0
            status = self._evaluate(key, key in moved, lag_seconds, summaries.get(key), now, transitions)
            self.statuses[key] = status
            rows.append(status)
        self.store.save_group_status(rows)
        if transitions:
            self.store.add_transitions(transitions)
        result.transitions = transitions

    def _evaluate(
        self, key, advanced: bool, lag_seconds, summary, now: float, transitions: list
    ) -> GroupStatus:
        """One group/topic's next state from its previous status; a transition is appended."""
        group, topic = key
        prev = self.statuses.get(key)
        prev_state = (
            states.GroupState(states.State(prev.state), prev.since, prev.static_samples, prev.reason)
            if prev is not None
            else states.initial(now)
        )
        new = states.step(prev_state, advanced=advanced, lag_seconds=lag_seconds, now=now, t=self.thresholds)
        if prev is None:
            self.log.info(
                "now monitoring group %s on topic %s (lag %ds)",
                printable(group),
                printable(topic),
                lag_seconds,
            )
        elif states.transitioned(prev_state, new):
            old_value, new_value = prev_state.state.value, new.state.value
            transitions.append(Transition(group, topic, now, old_value, new_value, new.reason))
            self.log.info(
                "group %s topic %s: %s -> %s (%s)",
                printable(group),
                printable(topic),
                old_value,
                new_value,
                new.reason,
            )
        return GroupStatus(
            group_id=group,
            topic=topic,
            state=new.state.value,
            since=new.since,
            reason=new.reason,
            static_samples=new.static_samples,
            last_sampled=now,
            next_sample=now + self._interval(new.state.value),
            last_present=now,
            lag_seconds=lag_seconds,
            lag_summary=summary,
        )

    def _next_delay(self, now: float) -> float:
        """Seconds until the earliest due group/topic, at most one sample interval."""
        interval = self.mon.sample_interval_seconds
        # Only groups the cluster still lists are ever sampled again (absent ones wait for the purge).
        due = [
            s.next_sample
            for (g, _t), s in self.statuses.items()
            if s.next_sample is not None and g in self._present
        ]
        if not due:
            return interval
        return max(0.0, min(interval, min(due) - now))


def make_step(cfg, store, log):
    sampler = Sampler(cfg, store, IsolatedKafkaClient(cfg.kafka, logger=log), log)
    return sampler.step, cfg.monitoring.sample_interval_seconds


def main(argv: list[str] | None = None) -> int:
    return stage_main("sampler", make_step, argv)

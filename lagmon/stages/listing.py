"""The sampler's listing (step 1 of a sample): which topics and groups are monitored, and what
leaves the monitoring. A mixin of lagmon.stages.sampler.Sampler.

What leaves, and when:
- a topic missing from two complete topic listings in a row is deleted with its history (one
  listing is not enough, and a topic listed with an error, as during a leader election, is
  unknown, not missing);
- a group missing from two complete group listings in a row goes OFFLINE ("group no longer
  listed by the cluster") and is purged by the housekeeper later;
- an excluded group or topic (config `exclude`) is not monitored: its group/topic pairs are
  dropped (status and commit history) at the first sample, without a transition, so they leave
  lag.json at the next report (the reporter also leaves them out itself, by the same config);
- a pair whose group is still listed and answers, but with no committed offset for that topic
  (its offsets were deleted, e.g. Admin.deleteConsumerGroupOffsets) in two answers in a row, gets
  a transition to OFFLINE "no committed offset for topic X any more" and is then dropped (status
  and commit history; the transition is kept), so it leaves lag.json at the next report. A group
  whose offset fetch fails (an ACL denial, a timeout) did not answer: nothing is concluded.

The sample's deadline: every Kafka call of a sample waits at most until
started + min(SAMPLE_DEADLINE_FACTOR * request_timeout_seconds, SAMPLE_DEADLINE_MAX) (15 s with
the default 10 s timeout; never more than half of supervisord's stopwaitsecs), so a sample
during an outage ends (and a SIGTERM is honoured) well within supervisord's stopwaitsecs.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lagmon import states
from lagmon.stages.runtime import printable
from lagmon.store import GroupStatus, Transition
from lagmon.supervisor import STOPWAITSECS

# Never monitored, whatever the config says.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
# One deadline per sample, for all its Kafka calls together.
SAMPLE_DEADLINE_FACTOR = 1.5
SAMPLE_DEADLINE_MAX = STOPWAITSECS / 2  # the other half: the shutdown after the step (worker, database)
# How many answers of a group in a row without a topic's commit make the pair gone.
MISSING_COMMIT_SAMPLES = 2

GroupTopic = tuple[str, str]


def matching_pattern(name: str, patterns) -> str | None:
    """The first exclude pattern (exact name or shell glob) that matches name."""
    for pattern in patterns:
        if name == pattern or fnmatch.fnmatchcase(name, pattern):
            return pattern
    return None


def split_excluded(names: Iterable[str], patterns) -> tuple[list[str], dict[str, str]]:
    """The names no pattern matches, and the others with the first pattern that matches each."""
    kept: list[str] = []
    excluded: dict[str, str] = {}
    for name in names:
        pattern = matching_pattern(name, patterns)
        if pattern is None:
            kept.append(name)
        else:
            excluded[name] = pattern
    return kept, excluded


def is_excluded(group: str, topic: str, exclude) -> bool:
    """Whether the config's `exclude` (or the internal topics) takes the group/topic out."""
    return (
        topic in INTERNAL_TOPICS
        or matching_pattern(topic, exclude.topics) is not None
        or matching_pattern(group, exclude.groups) is not None
    )


def sample_budget(request_timeout: float) -> float:
    """Seconds a whole sample may wait on Kafka."""
    return min(SAMPLE_DEADLINE_FACTOR * float(request_timeout), SAMPLE_DEADLINE_MAX)


class Listing:
    """Step 1 of Sampler.step, and the bookkeeping of what stops being monitored."""

    if TYPE_CHECKING:  # provided by Sampler
        cfg: Any
        mon: Any
        store: Any
        client: Any
        log: logging.Logger
        statuses: dict[GroupTopic, GroupStatus]
        topic_sampled: dict[str, float]
        _present: set[str]
        _missing_once: set[str]

    _topics_missing_once: set[str]
    _commit_missing: dict[GroupTopic, int]
    _saved_listing: dict[str, dict[GroupTopic, int]]
    _excluded_topics: dict[str, str]
    _excluded_groups: dict[str, str]
    deadline: float | None = None  # time.monotonic() the current sample's Kafka calls end by

    def _start_listing(self) -> None:
        """The listing memory as the last sampler left it (restart-equivalent)."""
        saved = self.store.listing_state()
        self._missing_once = {n for (n, _t) in saved.get("group", {})}
        self._topics_missing_once = {n for (n, _t) in saved.get("topic", {})}
        self._commit_missing = dict(saved.get("commit", {}))
        self._saved_listing = self._listing_state()
        self._excluded_topics, self._excluded_groups = {}, {}

    def _listing_state(self) -> dict[str, dict[GroupTopic, int]]:
        return {
            "group": {(g, ""): 1 for g in self._missing_once},
            "topic": {(t, ""): 1 for t in self._topics_missing_once},
            "commit": dict(self._commit_missing),
        }

    def _save_listing(self) -> None:
        """Store the listing memory when it changed (most samples it does not); called when a
        sample completes, so a sample that died leaves the memory as it found it."""
        state = self._listing_state()
        if state != self._saved_listing:
            self.store.save_listing_state(state)
            self._saved_listing = state

    def _monitored_topics(self, metadata: dict[str, int]) -> dict[str, int]:
        names = (t for t in metadata if t not in INTERNAL_TOPICS)
        kept, self._excluded_topics = split_excluded(names, self.cfg.exclude.topics)
        return {t: metadata[t] for t in kept}

    def _monitored_groups(self, listed: set[str]) -> set[str]:
        kept, self._excluded_groups = split_excluded(listed, self.cfg.exclude.groups)
        return set(kept)

    def _list(self, now: float, result) -> tuple[dict[str, int], set[str]]:
        """1. the monitored topics (name -> partition count) and groups; records exclusions,
        deleted topics and absent groups on the way. Starts the sample's deadline."""
        self.deadline = time.monotonic() + sample_budget(self.cfg.kafka.request_timeout_seconds)
        # The housekeeper purges absent groups: the database, not memory, is the truth.
        self.statuses = self.store.group_statuses()
        self._drop_excluded()
        metadata, errored = self.client.topics(deadline=self.deadline)
        topics = self._monitored_topics(metadata)
        listed, complete = self.client.groups(deadline=self.deadline)
        groups = self._monitored_groups(listed)
        if not complete:
            # A partial answer does not make a known group absent.
            known = {g for (g, _t) in self.statuses}
            groups |= {g for g in known if matching_pattern(g, self.cfg.exclude.groups) is None}
            self.log.warning("list_consumer_groups answered partially; keeping %d known groups", len(known))
        self.store.mark_excluded(self._excluded_topics, self._excluded_groups, now)

        self._forget_deleted_topics(metadata, errored, result)
        if complete:
            self._mark_absent(groups, now)
        self._present = groups
        return topics, groups

    def _drop_excluded(self) -> None:
        """Pairs of a group or topic the config now excludes leave the monitoring at once."""
        gone = sorted(k for k in self.statuses if is_excluded(k[0], k[1], self.cfg.exclude))
        if not gone:
            return
        self.store.drop_pairs(gone)
        for key in gone:
            del self.statuses[key]
            self._commit_missing.pop(key, None)
            self.log.info(
                "group %s topic %s is excluded by the config: no longer monitored, its history dropped",
                printable(key[0]),
                printable(key[1]),
            )

    def _mark_absent(self, groups: set[str], now: float) -> None:
        """Groups missing from two complete listings in a row go OFFLINE (and are purged later).
        One listing is not enough: a broker that is coming back can answer ListGroups
        completely but without groups whose coordinator has not loaded yet. An excluded group
        is not absent (its pairs were dropped by _drop_excluded)."""
        missing = {g for (g, _t) in self.statuses if g not in groups and g not in self._excluded_groups}
        confirmed, self._missing_once = missing & self._missing_once, missing
        rows, transitions = [], []
        for key, status in self.statuses.items():
            if key[0] not in confirmed or status.state == states.State.OFFLINE.value:
                continue
            reason = "group no longer listed by the cluster"
            transitions.append(
                Transition(key[0], key[1], now, status.state, states.State.OFFLINE.value, reason)
            )
            status = self._offline(status, now, reason)
            self.statuses[key] = status
            rows.append(status)
            self.log.info("group %s topic %s: -> offline (%s)", printable(key[0]), printable(key[1]), reason)
        if rows:
            self.store.save_group_status(rows)
            self.store.add_transitions(transitions)

    def _offline(self, status: GroupStatus, now: float, reason: str) -> GroupStatus:
        return GroupStatus(
            group_id=status.group_id,
            topic=status.topic,
            state=states.State.OFFLINE.value,
            since=now,
            reason=reason,
            static_samples=0,
            last_sampled=status.last_sampled,
            next_sample=now + self.mon.offline_sample_interval_seconds,
            last_present=status.last_present,
            lag_seconds=status.lag_seconds,
            lag_summary=status.lag_summary,
        )

    def _forget_deleted_topics(self, metadata: dict[str, int], errored: set[str], result) -> None:
        """Topics missing (not listed with an error: those are unknown) from two topic listings
        in a row are deleted with their history."""
        known = set(self.topic_sampled) | {t for (_g, t) in self.statuses}
        missing = {t for t in known if t not in metadata and t not in errored}
        confirmed, self._topics_missing_once = missing & self._topics_missing_once, missing
        for topic in sorted(missing - confirmed):
            self.log.info(
                "topic %s is not listed by the cluster; deleted if it is not listed next time",
                printable(topic),
            )
        for topic in sorted(confirmed):
            self.store.delete_topic(topic)
            self.topic_sampled.pop(topic, None)
            self.statuses = {k: v for k, v in self.statuses.items() if k[1] != topic}
            result.deleted_topics.append(topic)
            self.log.info("topic %s was deleted: its history is dropped", printable(topic))

    def _note_missing_commits(
        self, answered: Iterable[str], sampled: set[GroupTopic], topics: dict[str, int], now: float
    ) -> None:
        """After a committed-offsets answer: a pair of a group that answered without any commit for
        a topic that exists, MISSING_COMMIT_SAMPLES answers in a row, is gone (see the module doc)."""
        answered = set(answered)
        gone: list[GroupTopic] = []
        for key in sorted(self.statuses):
            group, topic = key
            if key in sampled:
                self._commit_missing.pop(key, None)
                continue
            if group not in answered or topic not in topics:
                continue  # no answer, or the topic is unknown right now: nothing to conclude
            count = self._commit_missing.get(key, 0) + 1
            self._commit_missing[key] = count
            if count >= MISSING_COMMIT_SAMPLES:
                gone.append(key)
        if not gone:
            return
        transitions = []
        for key in gone:
            status = self.statuses.pop(key)
            self._commit_missing.pop(key, None)
            reason = f"no committed offset for topic {key[1]} any more"
            if status.state != states.State.OFFLINE.value:
                transitions.append(
                    Transition(key[0], key[1], now, status.state, states.State.OFFLINE.value, reason)
                )
            self.log.info(
                "group %s topic %s: -> offline (%s); no longer monitored",
                printable(key[0]),
                printable(key[1]),
                printable(reason),
            )
        self.store.drop_pairs(gone)
        if transitions:
            self.store.add_transitions(transitions)

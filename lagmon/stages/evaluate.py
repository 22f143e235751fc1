"""The sampler's evaluation: anchors read where interpolation cannot date a commit, each
group/topic's lag at the instant its data holds, and its next state (lagmon.states).

Split from lagmon.stages.sampler (which fetches and schedules); these functions take the
Sampler and use its store, client, statuses and logger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lagmon import states, timelag
from lagmon.stages import figures_io
from lagmon.stages.runtime import printable
from lagmon.store import GroupStatus, Transition

if TYPE_CHECKING:
    from lagmon.stages.sampler import Sampler, SampleResult

# Message-timestamp reads (anchors) per sample are bounded in count and time, so
# a first start on a big cluster or a mass reset to earliest cannot stall a sample:
# what is not read now is read at the next sample.
MAX_ANCHOR_READS = 20_000
MIN_ANCHOR_BATCH = 100  # the smallest batch it halves to
ANCHOR_BUDGET_MIN, ANCHOR_BUDGET_MAX = 2.0, 10.0


def below_history(inp) -> bool:
    """The commit is older than every head row: only its message's timestamp dates it."""
    return inp.oldest_head is not None and inp.committed < inp.oldest_head[0]


def at_an_idle_head(inp) -> bool:
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


def read_anchors(sampler: Sampler, inputs, result: SampleResult) -> set[tuple[str, str]]:
    """Read the message timestamp at commits that fall below the head history or sit at an
    idle head, all in one batch; returns the group/topics that got new anchors."""
    wanted: dict[tuple[str, int, int], None] = {}
    owners: dict[tuple[str, int, int], set[tuple[str, str]]] = {}
    batch = sampler.anchor_batch
    for inp in inputs:
        if len(wanted) >= batch:
            break
        if not (below_history(inp) or at_an_idle_head(inp)):
            continue
        if inp.anchor_below is not None and inp.anchor_below[0] == inp.committed:
            continue
        key = (inp.topic, inp.partition, inp.committed)
        if key not in sampler.anchored:
            wanted[key] = None
            owners.setdefault(key, set()).add((inp.group_id, inp.topic))
    if not wanted:
        return set()
    if len(sampler.anchored) > MAX_ANCHOR_READS * 5:
        sampler.anchored.clear()  # bounded memory; at worst an anchor is read once more
    interval = sampler.mon.sample_interval_seconds
    budget = min(ANCHOR_BUDGET_MAX, max(ANCHOR_BUDGET_MIN, interval / 2))
    found = sampler.client.message_times(list(wanted), budget=budget, deadline=sampler.deadline)
    result.anchors_read = len(found)
    # A batch that did not fit the budget is halved for the next sample (else the same batch
    # would run out of time on every sample and no anchor would ever be read); a batch read
    # whole lets the next one double, back up to MAX_ANCHOR_READS.
    if len(found) < len(wanted):
        sampler.anchor_batch = max(MIN_ANCHOR_BATCH, len(wanted) // 2)
        sampler.log.info(
            "read %d of %d message timestamps within the %.1f s budget; the rest wait, %d per sample next",
            len(found),
            len(wanted),
            budget,
            sampler.anchor_batch,
        )
    elif len(wanted) >= batch:
        sampler.anchor_batch = min(MAX_ANCHOR_READS, 2 * batch)
    anchors, gone, touched = [], 0, set()
    for (topic, partition, committed), answer in found.items():
        sampler.anchored.add((topic, partition, committed))
        if answer is None:
            continue
        offset, ts = answer
        anchors.append((topic, partition, offset, ts, offset == committed))
        gone += offset != committed
        touched |= owners[(topic, partition, committed)]
    sampler.store.put_anchors(anchors)
    sampler.log.info(
        "anchored %d commits on their messages' timestamps%s",
        len(anchors),
        f" ({gone} messages gone: those lags are lower bounds)" if gone else "",
    )
    return touched


def update_states(sampler: Sampler, keys, advanced, at: float, result: SampleResult) -> None:
    """4. evaluate: lag at ``at`` (the instant the fetched data holds, after the commits and
    heads were read; anchors read where needed), then each state."""
    if not keys:
        return
    store = sampler.store
    inputs = store.lag_inputs(keys)
    touched = read_anchors(sampler, inputs, result)
    if touched:  # only those group/topics need their inputs again, now with anchors
        inputs = [i for i in inputs if (i.group_id, i.topic) not in touched] + store.lag_inputs(touched)
    terms = timelag.partition_terms(inputs)  # once, for the lags and the figures
    summaries = timelag.group_summaries(inputs, keys, terms)
    lags = {k: timelag.group_lag_at(v, at) for k, v in summaries.items()}
    figures_io.record_sample(store, inputs, summaries, sampler.log_starts, at, sampler.mon, terms)
    moved = {(g, t) for (g, t, _p) in advanced}
    rows: list[GroupStatus] = []
    transitions: list[Transition] = []
    for key in sorted(keys):
        lag = lags.get(key)
        lag_seconds = lag.seconds if lag is not None else 0
        status = evaluate(sampler, key, key in moved, lag_seconds, summaries.get(key), at, transitions)
        sampler.statuses[key] = status
        rows.append(status)
    store.save_group_status(rows)
    if transitions:
        store.add_transitions(transitions)
    result.transitions = transitions


def evaluate(
    sampler: Sampler, key, advanced: bool, lag_seconds, summary, now: float, transitions: list
) -> GroupStatus:
    """One group/topic's next state from its previous status; a transition is appended."""
    group, topic = key
    log = sampler.log
    prev = sampler.statuses.get(key)
    prev_state = (
        states.GroupState(states.State(prev.state), prev.since, prev.static_samples, prev.reason)
        if prev is not None
        else states.initial(now)
    )
    new = states.step(prev_state, advanced=advanced, lag_seconds=lag_seconds, now=now, t=sampler.thresholds)
    if prev is None:
        log.info(
            "now monitoring group %s on topic %s (lag %ds)", printable(group), printable(topic), lag_seconds
        )
    elif states.transitioned(prev_state, new):
        old_value, new_value = prev_state.state.value, new.state.value
        transitions.append(Transition(group, topic, now, old_value, new_value, new.reason))
        log.info(
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
        next_sample=now + sampler.interval(new.state.value),
        last_present=now,
        lag_seconds=lag_seconds,
        lag_summary=summary,
    )

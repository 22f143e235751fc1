"""The sampler's in-memory mirror (lagmon.store.cache) against the database it mirrors.

A Store with the mirror enabled must read the same lag inputs as the SQL reads from the same
file, and write the same rows as a Store without it, whatever the sequence of heads (moving,
idle, going down), commits (new, static, moving, jumping below the cached tail), anchors and
writes of another process (thinning, pruning, purging, dropping) in between.
"""

from __future__ import annotations

import random

import pytest

from lagmon import thinning
from lagmon.store import GroupStatus, Store, samples
from lagmon.store.cache import TAIL_ROWS, Brackets
from tests.helpers import raw

TOPICS = {"a": 3, "b": 2}
GROUPS = ["g1", "g2", "g3"]


def sql_inputs(path, keys):
    plain = Store(path)  # no mirror: the SQL alone
    try:
        return sorted(plain.lag_inputs(keys))
    finally:
        plain.close()


def table(path, name):
    return sorted(raw(path, f"SELECT * FROM {name}"))


class Script:
    """Random sample writes, the same for every Store it is replayed on."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.heads = {(t, p): self.rng.randrange(100) for t, n in TOPICS.items() for p in range(n)}
        self.commits = {(g, t, p): 0 for g in GROUPS for (t, p) in self.heads}

    def sample(self, i: int):
        rng = self.rng
        for tp in self.heads:
            r = rng.random()
            if r < 0.03:
                self.heads[tp] = rng.randrange(5)  # recreated: the head goes down
            elif r < 0.75:
                self.heads[tp] += rng.randrange(1, 4)
        commits = {}
        for key in self.commits:
            _g, t, p = key
            head = self.heads[(t, p)]
            r = rng.random()
            if r < 0.1:
                self.commits[key] = max(0, head - rng.randrange(TAIL_ROWS * 3))  # far behind
            elif r < 0.6:
                self.commits[key] = head - rng.randrange(3)
            self.commits[key] = min(max(0, self.commits[key]), head)
            if rng.random() < 0.8:  # not every group/topic every sample
                commits[key] = self.commits[key]
        anchors = [
            (
                t,
                p,
                max(0, self.heads[(t, p)] - rng.randrange(50)),
                1000.0 + i - rng.random(),
                rng.random() < 0.5,
            )
            for (t, p) in rng.sample(sorted(self.heads), 2)
        ]
        other = rng.choice([None, None, None, "thin", "prune", "purge", "drop"])
        return dict(self.heads), commits, anchors, other


def replay(store: Store, step: tuple, at: float):
    heads, commits, anchors, other = step
    store.record_heads(heads, at)
    advanced = store.record_commits(commits, at + 0.5)
    store.put_anchors(anchors)
    return advanced, other


def housekeeping(path, other, at):
    """What the housekeeper (or the listing) does in its own connection."""
    if other is None:
        return
    hk = Store(path)
    try:
        if other == "thin":
            hk.thin_heads(6, thinning.keep_indexes)
            hk.thin_commits(4, thinning.keep_indexes)
        elif other == "prune":
            hk.prune_anchors()
        elif other == "purge":
            hk.save_group_status([GroupStatus("g3", "b", "online", 0.0, "", 0, None, None, at - 100, 0.0)])
            assert hk.purge_absent_groups(at - 50) == 1
        else:
            hk.drop_pairs([("g2", "a")])
    finally:
        hk.close()


@pytest.mark.parametrize("seed", range(6))
def test_the_mirror_reads_and_writes_what_the_sql_does(tmp_path, seed):
    cached_path, plain_path = str(tmp_path / "cached.db"), str(tmp_path / "plain.db")
    cached, plain = Store(cached_path), Store(plain_path)
    cached.enable_brackets()
    script = Script(seed)
    keys = [(g, t) for g in GROUPS for t in TOPICS]
    from_memory = 0
    try:
        for i in range(80):
            step = script.sample(i)
            at = 1000.0 + 10 * i
            assert replay(cached, step, at) == replay(plain, step, at), f"advanced at sample {i}"
            for path in (cached_path, plain_path):
                housekeeping(path, step[3], at)
            got = sorted(cached.lag_inputs(keys))
            assert got == sql_inputs(cached_path, keys), f"lag inputs at sample {i}"
            assert got == sorted(plain.lag_inputs(keys)), f"lag inputs against the plain store at {i}"
            from_memory += len(cached._brackets.inputs(keys)[0]) if cached._brackets else 0
        for name in ("latest_commits", "consumer_commits", "partition_offsets", "partition_anchors"):
            assert table(cached_path, name) == table(plain_path, name), name
    finally:
        cached.close()
        plain.close()
    assert from_memory > 0  # the mirror answered, not only the SQL


def test_another_writer_moves_the_epoch_and_the_mirror_reloads(tmp_path):
    path = str(tmp_path / "s.db")
    store = Store(path)
    store.enable_brackets()
    store.record_heads({("t", 0): 10}, 1.0)
    store.record_heads({("t", 0): 20}, 2.0)
    store.record_commits({("g", "t", 0): 15}, 2.5)
    before = store._brackets.epoch
    other = Store(path)
    other.delete_topic("t")  # e.g. the listing of another sampler run, or a purge
    other.close()
    assert store.lag_inputs([("g", "t")]) == []  # not the mirror's stale row
    assert store._brackets.epoch != before


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("rows_per_statement", [1, 4])
def test_record_commits_in_multi_row_statements_writes_what_the_sql_does(
    tmp_path, monkeypatch, seed, rows_per_statement
):
    """record_commits' rows go in statements of ROWS_PER_STATEMENT rows (and the rest one by
    one), in key order: the same rows, advanced keys and mirror as the SQL path, whatever the
    order of the commits given and however they split into statements."""
    monkeypatch.setattr(samples, "ROWS_PER_STATEMENT", rows_per_statement)
    cached_path, plain_path = str(tmp_path / "cached.db"), str(tmp_path / "plain.db")
    cached, plain = Store(cached_path), Store(plain_path)
    cached.enable_brackets()
    script = Script(seed)
    shuffle = random.Random(seed).shuffle
    try:
        for i in range(40):
            heads, commits, anchors, other = script.sample(i)
            order = list(commits.items())
            shuffle(order)
            step = (heads, dict(order), anchors, other)
            at = 1000.0 + 10 * i
            if i % 7 == 3:  # the same sample time again: runs that begin at `at` already exist
                at -= 10
            assert replay(cached, step, at) == replay(plain, step, at), f"advanced at sample {i}"
            mirror = cached._brackets  # before another writer moves the epoch: as the file has it
            assert mirror is not None and mirror.epoch is not None
            reloaded = Brackets()
            reloaded.load(mirror.epoch, [], [], [], raw(cached_path, "SELECT * FROM latest_commits"))
            assert mirror.commits == reloaded.commits, f"mirror at sample {i}"
            for name in ("latest_commits", "consumer_commits"):
                assert table(cached_path, name) == table(plain_path, name), f"{name} at sample {i}"
            for path in (cached_path, plain_path):
                housekeeping(path, other, at)
    finally:
        cached.close()
        plain.close()

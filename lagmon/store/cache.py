"""The sampler's in-memory mirror of the rows its lag inputs are read from (issue 14).

``Brackets`` holds, per partition, the newest TAIL_ROWS head rows (offsets, first_seen,
last_seen in arrays), the oldest head row and every anchor, and per group/topic the latest
commits: exactly what ``sql.LAG_INPUTS_SQL`` reads, for the commits at or above the oldest
cached head row of their partition. It is loaded from the database (``Store.enable_brackets``
and again whenever ``history_epoch`` moved: every write the sampler's own sample writes do not
mirror bumps it: thinning, pruning, purging, dropping) and then kept up to date by the
sampler's own writes (record_heads, record_commits, put_anchors), after they committed.

The database stays the source of truth: a sampler restarted on the same file loads the same
rows, and a lag input built here equals the one the SQL would build (tests/test_brackets.py
and tests/test_restart_equivalence.py hold them equal). A commit below the cached tail (a
group far behind) is read with the SQL, as before.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping

from lagmon.timelag import LagInput

# Head rows kept per partition: a commit up to this many moving-head samples behind its head
# is bracketed from memory (about 1 KB per partition).
TAIL_ROWS = 32

TopicPartition = tuple[str, int]
_UNSEEN: tuple = ()  # not looked up yet (a found result is a 7-tuple or None)
# A latest_commits row: (group_id, topic, partition, committed_offset, first_seen, last_seen).
Commit = tuple[str, str, int, int, float, float]


class Tail:
    """A partition's newest head rows, oldest first, complete from offsets[0] up."""

    __slots__ = ("first", "last", "offsets")

    def __init__(self, offset: int, first_seen: float, last_seen: float):
        self.offsets = array("q", [offset])
        self.first = array("d", [first_seen])
        self.last = array("d", [last_seen])

    def add(self, offset: int, at: float) -> None:
        """What record_heads does to the rows for a head `offset` not below the newest."""
        if offset == self.offsets[-1]:
            self.last[-1] = max(self.last[-1], at)
            return
        self.offsets.append(offset)
        self.first.append(at)
        self.last.append(at)
        if len(self.offsets) > TAIL_ROWS:
            for a in (self.offsets, self.first, self.last):
                del a[: len(a) - TAIL_ROWS]


class Brackets:
    """See the module docstring. ``epoch`` None: not loaded (or invalid): reload first."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.tails: dict[TopicPartition, Tail] = {}
        self.oldest: dict[TopicPartition, tuple[int, float]] = {}
        self.anchors: dict[TopicPartition, tuple[list[int], list[float]]] = {}
        self.commits: dict[tuple[str, str], dict[int, Commit]] = {}

    def load(self, epoch: int, newest, oldest, anchors, commits) -> None:
        """From rows: newest/oldest (topic, partition, offset, first_seen[, last_seen]) per
        partition, anchors (topic, partition, offset, timestamp) in offset order, commits
        (group, topic, partition, offset, first_seen, last_seen)."""
        self.tails = {(t, p): Tail(int(o), float(f), float(s)) for t, p, o, f, s in newest}
        self.oldest = {(t, p): (int(o), float(f)) for t, p, o, f in oldest}
        self.anchors = {}
        for t, p, o, ts in anchors:
            offs, times = self.anchors.setdefault((t, p), ([], []))
            offs.append(int(o))
            times.append(float(ts))
        self.commits = {}
        self.set_commits((g, t, int(p), int(o), float(f), float(s)) for g, t, p, o, f, s in commits)
        self.epoch = epoch

    # --- the sampler's own writes, mirrored after they committed
    def record_heads(self, heads: Mapping[TopicPartition, int], at: float, reset: Iterable) -> None:
        at = float(at)
        for tp in reset:
            self.tails.pop(tp, None)
            self.oldest.pop(tp, None)
            self.anchors.pop(tp, None)
        for tp, offset in heads.items():
            tail = self.tails.get(tp)
            if tail is None:
                self.tails[tp] = Tail(int(offset), at, at)
                self.oldest[tp] = (int(offset), at)
            else:
                tail.add(int(offset), at)

    def put_anchors(self, rows: Iterable[tuple[str, int, int, float, int]]) -> None:
        for t, p, o, ts, _exact in rows:
            offs, times = self.anchors.setdefault((t, p), ([], []))
            i = bisect_left(offs, o)
            if i < len(offs) and offs[i] == o:
                times[i] = float(ts)
            else:
                insort(offs, o)
                times.insert(i, float(ts))

    def set_commits(self, rows: Iterable[Commit]) -> None:
        """latest_commits rows as the database now has them."""
        commits = self.commits
        for row in rows:
            parts = commits.get((row[0], row[1]))
            if parts is None:
                parts = commits[(row[0], row[1])] = {}
            parts[row[2]] = row

    # --- reads
    def inputs(self, keys: Iterable[tuple[str, str]]) -> tuple[list[LagInput], list[tuple[str, str]]]:
        """The lag inputs of `keys` (as sql.LAG_INPUTS_WANTED gives them), and the keys with a
        commit below its partition's cached tail, which the caller reads with the SQL."""
        out: list[LagInput] = []
        missed: list[tuple[str, str]] = []
        new = tuple.__new__
        # The history points of (topic, partition, commit), shared by the groups at that commit.
        seen: dict[tuple[str, int, int], tuple | None] = {}
        for key in sorted(keys):
            parts = self.commits.get(key)
            if not parts:
                continue
            g, t = key
            rows = []
            for p, (_g, _t, _p, c, cf, cl) in parts.items():
                at = (t, p, c)
                points = seen.get(at, _UNSEEN)
                if points is _UNSEEN:
                    points = seen[at] = self._points(t, p, c)
                if points is None:
                    break  # below the tail, and rows below it are not cached
                # (tuple.__new__: the generated LagInput.__new__ is a Python call per row)
                rows.append(new(LagInput, (g, t, p, c, cf, cl, *points)))
            else:
                out += rows
                continue
            missed.append(key)
        return out, missed

    def _points(self, t: str, p: int, c: int) -> tuple | None:
        """LagInput's fields from newest_head on for a commit `c` on (t, p); None when the
        commit is below the cached tail of a partition with older rows."""
        tp = (t, p)
        tail = self.tails.get(tp)
        newest = hb = ha = hbf = None
        oldest = self.oldest.get(tp)
        if tail is not None:
            offs = tail.offsets
            i = bisect_right(offs, c) - 1
            if i >= 0:
                hb, hbf = (offs[i], tail.last[i]), tail.first[i]
            elif oldest is None or oldest[0] != offs[0]:
                return None
            if i + 1 < len(offs):
                ha = (offs[i + 1], tail.first[i + 1])
            newest = offs[-1]
        ab = aa = None
        a = self.anchors.get(tp) if self.anchors else None
        if a is not None:
            offs_a, times = a
            j = bisect_right(offs_a, c) - 1
            if j >= 0:
                ab = (offs_a[j], times[j])
            k = bisect_left(offs_a, c)
            if k < len(offs_a):
                aa = (offs_a[k], times[k])
        return (newest, hb, ha, ab, aa, oldest, hbf)

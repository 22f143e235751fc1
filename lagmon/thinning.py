"""Which history rows to keep (pure, no I/O).

Rows are ``(offset, first_seen, last_seen)``, oldest first. Interpolating between two
kept rows errs by at most the time gap between them, and the lag of any offset in that
gap is at least the age of the newer row. Keeping gaps <= r * age therefore bounds the
relative error of a lag by r (time-lag.md, "Keeping days of history"): spacing grows
geometrically with age. The newest rows and the oldest row are always kept, the latter
so that the history span (and so the lag of long-offline groups) is never cut short.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

Row = tuple[int, float, float]

__all__ = ["keep_indexes", "newest_kept", "spacing_ratio"]

# The ratio is found to within this fraction of itself: the error bound it sets differs from
# the best one by as little, and each halving of it costs one more walk over the history.
RATIO_PRECISION = 1e-3


def newest_kept(max_entries: int) -> int:
    """How many of the newest rows are always kept."""
    return min(max(2, max_entries // 10), max_entries - 1)


def _walk(
    first: Sequence[float], last: Sequence[float], start: int, ref: float, r: float, limit: int
) -> list[int] | None:
    """Indexes kept below ``start`` (exclusive) walking older with allowed gap r * age,
    always ending at 0; None as soon as more than ``limit`` would be needed."""
    if start <= 0:
        return []
    if not math.isfinite(r):
        return [0]  # any gap is allowed: one jump to the oldest row
    kept: list[int] = []
    cur = start
    while cur > 0:
        f = first[cur]
        # the oldest j < cur whose last_seen is within r * age of cur's first_seen
        j = bisect.bisect_left(last, f - r * (ref - f) if ref > f else f, 0, cur)
        if j >= cur:
            j = cur - 1  # the next older row is already too far: it must stay
        kept.append(j)
        if len(kept) > limit:
            return None
        cur = j
    return kept


def _prefix_max(values: Sequence[float]) -> list[float]:
    out, m = [], -math.inf
    for v in values:
        m = v if v > m else m
        out.append(m)
    return out


def spacing_ratio(rows: Sequence[Row], max_entries: int, *, now: float | None = None) -> float:
    """The smallest ratio r (found by bisection) whose thinning fits in max_entries; 0.0 when all fit."""
    return _solve(rows, max_entries, now)[0]


def _solve(rows: Sequence[Row], max_entries: int, now: float | None) -> tuple[float, set[int]]:
    if max_entries < 2:
        raise ValueError(f"max_entries must be >= 2 (got {max_entries})")
    n = len(rows)
    if n <= max_entries:
        return 0.0, set(range(n))
    k = newest_kept(max_entries)
    start = n - k
    first = [float(r[1]) for r in rows]
    # bisect needs a non-decreasing key; clock steps backwards must not break it
    last = _prefix_max([float(r[2]) for r in rows])
    ref = last[-1]
    if now is not None and math.isfinite(now):
        ref = max(ref, float(now))
    limit = max_entries - k  # rows left for the walk, including the oldest one

    def fits(r: float) -> list[int] | None:
        return _walk(first, last, start, ref, r, limit)

    hi = 1.0 / 64
    best = fits(hi)
    while best is None and hi < 1e12:
        hi *= 2
        best = fits(hi)
    if best is None:
        hi, best = math.inf, fits(math.inf)
        assert best is not None  # one jump to the oldest row always fits
    else:
        lo = 0.0
        for _ in range(48):
            mid = (lo + hi) / 2
            got = fits(mid)
            if got is None:
                lo = mid
            else:
                hi, best = mid, got
            if hi - lo <= RATIO_PRECISION * hi:
                break
    return hi, set(range(start, n)) | set(best)


def keep_indexes(rows: Sequence[Row], max_entries: int, *, now: float | None = None) -> set[int]:
    """Indexes of ``rows`` (oldest first) to keep: at most ``max_entries`` (>= 2) of them.

    All rows when they fit; otherwise the newest ``newest_kept(max_entries)`` rows, the
    oldest row, and between them rows whose spacing grows in proportion to their age
    (age measured from ``now``, default the newest row's last_seen). Deterministic.
    """
    return _solve(rows, max_entries, now)[1]

"""lagmon.thinning: bounded history with geometric spacing (relative lag error ~constant)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lagmon.thinning import keep_indexes, newest_kept, spacing_ratio
from tests.oracles import history_bracket, lag_input, partition_lag

T0 = 1_700_000_000.0
DAY = 86_400.0
PROPS = settings(max_examples=120, deadline=None)


@st.composite
def head_rows(draw, max_rows: int = 400):
    """Rows oldest first: strictly increasing offsets, first_seen <= last_seen < next first_seen."""
    n = draw(st.integers(0, max_rows))
    rnd = draw(st.randoms(use_true_random=False))
    t, off, rows = T0, draw(st.integers(0, 1000)), []
    for _ in range(n):
        first = t + rnd.choice([1.0, 30.0, 60.0, 60.0, 600.0, 7200.0]) * (0.5 + rnd.random())
        last = first + (0.0 if rnd.random() < 0.7 else rnd.random() * 3600)
        off += rnd.randint(1, 500)
        rows.append((off, first, last))
        t = last
    return rows


@PROPS
@given(rows=head_rows(), max_entries=st.integers(2, 120), later=st.one_of(st.none(), st.floats(0, 1e6)))
def test_bounds_and_always_kept_rows(rows, max_entries, later):
    now = None if later is None or not rows else rows[-1][2] + later
    kept = keep_indexes(rows, max_entries, now=now)
    assert kept == keep_indexes(list(rows), max_entries, now=now)  # deterministic
    assert kept <= set(range(len(rows)))
    if len(rows) <= max_entries:
        assert kept == set(range(len(rows)))
        return
    assert len(kept) <= max_entries
    assert 0 in kept  # the oldest: history span kept
    k = newest_kept(max_entries)
    assert k >= min(2, max_entries - 1)
    assert set(range(len(rows) - k, len(rows))) <= kept  # the newest rows


@PROPS
@given(rows=head_rows(), max_entries=st.integers(3, 120))
def test_gaps_bounded_by_ratio_times_age(rows, max_entries):
    """Between consecutive kept rows the time gap is <= r * age of the newer one, unless they were neighbours."""
    kept = sorted(keep_indexes(rows, max_entries))
    if len(rows) <= max_entries:
        return
    r = spacing_ratio(rows, max_entries)
    assert r > 0
    ref = rows[-1][2]
    for older, newer in zip(kept, kept[1:], strict=False):
        if newer - older == 1:
            continue
        gap = rows[newer][1] - rows[older][2]
        assert gap <= r * (ref - rows[newer][1]) * (1 + 1e-9) + 1e-6


@PROPS
@given(n=st.integers(50, 3000), max_entries=st.integers(10, 300), dt=st.sampled_from([1.0, 60.0, 1800.0]))
def test_spacing_grows_with_age(n, max_entries, dt):
    rows = [(i * 10, T0 + i * dt, T0 + i * dt) for i in range(n)]
    kept = sorted(keep_indexes(rows, max_entries))
    if n <= max_entries:
        assert len(kept) == n
        return
    steps = [
        b - a for a, b in zip(kept[1:], kept[2:], strict=False)
    ]  # index gaps, oldest first, without the jump from row 0
    for older, newer in zip(steps, steps[1:], strict=False):
        assert older >= newer
    assert len(kept) >= max_entries - 2  # the budget is (nearly) used


def test_small_budget_and_validation():
    rows = [(i, float(i), float(i)) for i in range(10)]
    assert keep_indexes(rows, 2) == {0, 9}
    assert keep_indexes(rows, 3) == {0, 8, 9}
    assert keep_indexes(rows[:2], 2) == {0, 1}
    assert keep_indexes([], 5) == set()
    with pytest.raises(ValueError):
        keep_indexes(rows, 1)
    assert spacing_ratio(rows, 20) == 0.0


# ---------------------------------------------------------------- lag error after thinning


def week_of_rows(seed: int, days: float = 7.0) -> list[tuple[int, float, float]]:
    """1 sample/min for `days` with a diurnal, bursty rate and idle hours (flat runs collapse)."""
    rnd = random.Random(seed)
    rows: list[list] = []
    off = 1_000_000
    idle_left = 0
    for i in range(int(days * DAY / 60)):
        t = T0 + 60.0 * i
        if idle_left == 0 and rnd.random() < 0.002:
            idle_left = rnd.randint(10, 240)
        if idle_left:
            idle_left -= 1
        else:
            rate = 50 * (1.2 + math.sin(2 * math.pi * t / DAY)) * rnd.choice([0.2, 1.0, 1.0, 5.0])
            off += int(rate * 60)
        if rows and rows[-1][0] == off:
            rows[-1][2] = t
        else:
            rows.append([off, t, t])
    return [tuple(r) for r in rows]


def lag_from(rows, c, now):
    b = history_bracket(rows, [], c)
    inp = lag_input(b, c, commit_first_seen=now - 3600, commit_last_seen=now - 60)
    return partition_lag(inp, now)


def probes(rows, now, min_lag: float, count: int = 150):
    """Committed offsets spread over the part of the history whose lag is >= min_lag."""
    old = [r for r in rows if now - r[2] >= min_lag]
    step = max(1, len(old) // count)
    return [r[0] + (j % 3) * 7 for j, r in enumerate(old[::step])]


def assert_relative_error(full, thin, now, limit):
    worst = 0.0
    for c in probes(full, now, min_lag=3600):
        want, got = lag_from(full, c, now), lag_from(thin, c, now)
        assert not got.lower_bound or want.lower_bound
        worst = max(worst, abs(got.seconds - want.seconds) / want.seconds)
    assert worst < limit, worst
    return worst


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_week_thinned_once_to_300_rows_keeps_relative_error_small(seed):
    full = week_of_rows(seed)
    now = full[-1][2] + 30
    kept = sorted(keep_indexes(full, 300, now=now))
    thin = [full[i] for i in kept]
    assert len(thin) <= 300 and thin[0] == full[0]
    assert assert_relative_error(full, thin, now, 0.05) < 0.05
    # an offline group committed near the start of the week still sees ~7 days, not a capped span
    c = full[1][0] - 1
    assert lag_from(thin, c, now).seconds == pytest.approx(lag_from(full, c, now).seconds, rel=0.05)
    assert lag_from(thin, c, now).seconds > 6.9 * DAY


def test_week_thinned_repeatedly_like_the_housekeeper():
    """Thin every 15 new rows (900 s housekeeping, 60 s samples) over a week: the error stays bounded."""
    full = week_of_rows(7)
    kept_rows: list[tuple[int, float, float]] = []
    since_thin = 0
    for row in full:
        kept_rows.append(row)
        since_thin += 1
        if since_thin >= 15 and len(kept_rows) > 300:
            idx = keep_indexes(kept_rows, 300, now=row[2])
            kept_rows = [r for i, r in enumerate(kept_rows) if i in idx]
            since_thin = 0
    now = full[-1][2] + 30
    assert kept_rows[0] == full[0]
    assert len(kept_rows) <= 300 + 15
    assert_relative_error(full, kept_rows, now, 0.05)

"""ONLINE / OFFLINE / RECOVERING state machine per (group, topic) (pure, no I/O).

A sample is *static* when no committed offset of the group/topic advanced and the
lag is > 0; a caught-up group (lag == 0) is never static. Rules:

* ONLINE: static -> count; the count reaching N -> OFFLINE. Not static -> count = 0.
* OFFLINE: lag == 0 -> ONLINE (caught up); advanced and lag < threshold -> ONLINE;
  advanced and lag >= threshold -> RECOVERING.
* RECOVERING: static -> count, reaching N -> OFFLINE (checked first);
  lag < threshold (or lag == 0) and now - since >= minimum duration -> ONLINE.

``static_samples`` always holds the number of consecutive static samples, in every state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from lagmon.timelag import round_seconds

__all__ = [
    "GroupState",
    "State",
    "Thresholds",
    "initial",
    "resolution",
    "sample_interval",
    "step",
    "transitioned",
]


class State(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    RECOVERING = "recovering"


@dataclass(frozen=True)
class Thresholds:
    offline_samples: int  # offline_detection_consecutive_samples (N >= 1)
    online_lag_threshold: float  # online_lag_threshold_seconds
    recovering_min_duration: float  # recovering_minimum_duration_seconds

    @classmethod
    def from_monitoring(cls, m: Any) -> Thresholds:
        """From config.MonitoringSettings (or a mapping with the spec's key names)."""

        def get(key: str) -> Any:
            return m[key] if isinstance(m, Mapping) else getattr(m, key)

        return cls(
            offline_samples=int(get("offline_detection_consecutive_samples")),
            online_lag_threshold=float(get("online_lag_threshold_seconds")),
            recovering_min_duration=float(get("recovering_minimum_duration_seconds")),
        )


@dataclass(frozen=True)
class GroupState:
    state: State
    since: float
    static_samples: int = 0
    reason: str = ""


def initial(now: float) -> GroupState:
    return GroupState(state=State.ONLINE, since=now, static_samples=0, reason="first seen")


def _s(seconds: float) -> str:
    """Seconds for a reason text, rounded like every lag (timelag.round_seconds); "?s" if not finite."""
    if not math.isfinite(seconds):
        return "?s"
    return f"{round_seconds(seconds)}s"


def step(prev: GroupState, *, advanced: bool, lag_seconds: float, now: float, t: Thresholds) -> GroupState:
    """The state after one sample. A transition sets since=now and a reason; otherwise
    since and reason are kept and only static_samples changes."""
    lag = lag_seconds if math.isfinite(lag_seconds) and lag_seconds > 0 else 0.0
    caught_up = lag == 0
    static = not advanced and not caught_up
    count = prev.static_samples + 1 if static else 0
    n = max(1, t.offline_samples)
    below = caught_up or lag < t.online_lag_threshold
    state = State(prev.state)

    def go(to: State, reason: str) -> GroupState:
        return GroupState(state=to, since=now, static_samples=count, reason=reason)

    if state is State.ONLINE:
        if count >= n:
            return go(State.OFFLINE, f"offsets static for {count} samples with lag {_s(lag)}")
    elif state is State.OFFLINE:
        if caught_up:
            return go(State.ONLINE, "caught up (lag 0s)")
        if advanced and below:
            return go(
                State.ONLINE, f"offsets advancing with lag {_s(lag)} < {_s(t.online_lag_threshold)} threshold"
            )
        if advanced:
            return go(
                State.RECOVERING,
                f"offsets advancing again with lag {_s(lag)} >= {_s(t.online_lag_threshold)} threshold",
            )
    else:  # RECOVERING
        if count >= n:
            return go(State.OFFLINE, f"offsets static for {count} samples with lag {_s(lag)}")
        stayed = now - prev.since
        if below and stayed >= t.recovering_min_duration:
            what = (
                "caught up (lag 0s)"
                if caught_up
                else (f"lag {_s(lag)} < {_s(t.online_lag_threshold)} threshold")
            )
            return go(State.ONLINE, f"{what} after {_s(stayed)} recovering")
    return replace(prev, state=state, static_samples=count)


def transitioned(prev: GroupState, new: GroupState) -> bool:
    return State(prev.state) is not State(new.state)


def sample_interval(
    state: State | str, sample_interval_seconds: float, offline_sample_interval_seconds: float
) -> float:
    """ONLINE samples every sample_interval_seconds; OFFLINE/RECOVERING every offline_sample_interval_seconds."""
    if State(state) is State.ONLINE:
        return float(sample_interval_seconds)
    return float(offline_sample_interval_seconds)


def resolution(state: State | str) -> str:
    return "fine" if State(state) is State.ONLINE else "coarse"

"""Reading the sandbox's request records as the judge of the flow-control invariants."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any


def max_in_window(starts: Sequence[float], window_s: float) -> int:
    """Most requests whose arrival falls in any half-open window [t, t + window_s).

    Checking windows that open at each arrival is enough: any window's count is at most that
    of the window opening at its first arrival.
    """
    ordered = sorted(starts)
    return max((bisect_left(ordered, t + window_s) - i for i, t in enumerate(ordered)), default=0)


def max_in_flight(requests: Sequence[dict[str, Any]]) -> int:
    """Most requests being served at once (an interval ends before one starting at its end)."""
    events = []
    for r in requests:
        events.append((r["started_at"], 1))
        events.append((r["ended_at"] if r["ended_at"] is not None else float("inf"), -1))
    events.sort(key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def achieved_rate(starts: Sequence[float]) -> float:
    """Requests per second between the first and the last arrival."""
    ordered = sorted(starts)
    if len(ordered) < 2 or ordered[-1] == ordered[0]:
        return 0.0
    return (len(ordered) - 1) / (ordered[-1] - ordered[0])

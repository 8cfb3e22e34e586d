"""Advertised per-tenant rate limits: the sandbox only reports them in headers, never enforces.

pmsq may read `X-RateLimit-Limit` / `X-RateLimit-Remaining` to tune its own pacing; the
sandbox's job is to judge that pacing from its request records, not to police it.
"""

from __future__ import annotations

import math
from collections import deque

from pmsq.pms.sandbox.headers import RATE_LIMIT_LIMIT, RATE_LIMIT_REMAINING, format_header_number

#: Width of the window `X-RateLimit-Remaining` counts writes in.
WINDOW_S = 1.0


class TenantLimits:
    """Limits set through `POST /_sandbox/tenants/{tenant}/limits`, and recent write times."""

    def __init__(self) -> None:
        self._requests_per_s: dict[str, float] = {}
        self._recent_writes: dict[str, deque[float]] = {}

    def set(self, tenant: str, requests_per_s: float | None) -> None:
        """Advertise a limit for the tenant; None stops advertising one."""
        if requests_per_s is None:
            self._requests_per_s.pop(tenant, None)
            self._recent_writes.pop(tenant, None)
        else:
            self._requests_per_s[tenant] = requests_per_s

    def note_write(self, tenant: str, now_s: float) -> list[tuple[str, str]]:
        """Count a write arriving at `now_s`; returns the headers its answer carries (maybe none).

        Remaining is the limit (rounded down) minus the writes, this one included, that arrived
        in the last `WINDOW_S` seconds, never below zero.
        """
        limit = self._requests_per_s.get(tenant)
        if limit is None:
            return []
        recent = self._recent_writes.setdefault(tenant, deque())
        recent.append(now_s)
        while recent and recent[0] <= now_s - WINDOW_S:
            recent.popleft()
        remaining = max(0, math.floor(limit) - len(recent))
        return [
            (RATE_LIMIT_LIMIT, format_header_number(limit)),
            (RATE_LIMIT_REMAINING, str(remaining)),
        ]

    def clear(self) -> None:
        self._requests_per_s.clear()
        self._recent_writes.clear()

"""An integration's limits as the Lua scripts take them."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pmsq.models.enums import CADENCE_SECONDS, Cadence
from pmsq.models.integration import Integration

#: Admissions may run this far ahead of the request slots they will use, so a dispatcher that
#: wakes a little late does not lose throughput; capped by one interval.
MAX_TOLERANCE_US = 50_000


def version_of(updated_at: datetime) -> int:
    """An integration's `updated_at` as its limits' version (us since the epoch)."""
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    return round(updated_at.timestamp() * 1_000_000)


@dataclass(frozen=True)
class Limits:
    #: Spacing of PMS requests (and of admissions), in microseconds.
    interval_us: int
    #: How far admissions may run ahead of the request pacing.
    tolerance_us: int
    #: Most jobs of the integration admitted at once.
    concurrency: int
    #: The integration's `updated_at` (us) these limits were computed from: Redis keeps the
    #: newest, and the healing sweep reloads limits older than the job store's.
    version_us: int = 0

    @classmethod
    def of(cls, integration: Integration, margin_ms: float) -> Limits:
        limits = cls.from_values(
            integration.max_request_frequency,
            Cadence(integration.max_request_cadence),
            integration.max_job_concurrency,
            margin_ms,
        )
        return replace(limits, version_us=version_of(integration.updated_at))

    @classmethod
    def from_values(
        cls, frequency: float, cadence: Cadence, concurrency: int, margin_ms: float
    ) -> Limits:
        """`frequency` requests per `cadence`, spaced evenly.

        The margin that makes the limit hold at the PMS: the window is stretched by
        `margin_ms` (n = `frequency` intervals span the cadence plus the margin), and pace.lua
        lets consecutive requests leave at least one interval apart on Redis's clock, with no
        catch-up. So requests k and k+n are decided at least cadence + margin apart, and no
        window of one cadence unit at the PMS holds more than n requests as long as the delay
        from the pacing decision to the request's arrival at the PMS varies by less than the
        margin between any two requests. The pacer spends half of it: a pass whose round trip
        to Redis took more than half the margin longer than the fastest one seen is stale (its
        request would leave late and land too close to the next one); its slot is given back
        (give_back.lua) and a fresh one taken. The other half covers the path from worker to
        PMS (connect, send, network, the PMS's own queueing).

        A fractional frequency is rounded down: no window may hold more than `frequency`
        requests, and evenly spaced requests at 1.5 per second would put two in some second.
        """
        window_us = CADENCE_SECONDS[cadence] * 1_000_000 + margin_ms * 1000
        whole = max(1, math.floor(frequency))
        interval_us = max(1, math.ceil(window_us / whole))
        return cls(interval_us, min(interval_us, MAX_TOLERANCE_US), concurrency)

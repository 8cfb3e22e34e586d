"""An integration's limits as the Lua scripts take them."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from models.enums import CADENCE_SECONDS, Cadence
from models.integration import Integration

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
    #: How much of a late request's lateness the next request may win back, so the request
    #: rate does not drift below the limit by the pacing sleeps' overshoot. Half the margin:
    #: the other half still covers network jitter.
    catchup_us: int = 0
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

        The window is stretched by `margin_ms` so that the jitter between the pacing check and
        the request reaching the PMS cannot squeeze one request too many into a window. A
        fractional frequency is rounded down: no window may hold more than `frequency`
        requests, and evenly spaced requests at 1.5 per second would put two in some second.
        """
        window_us = CADENCE_SECONDS[cadence] * 1_000_000 + margin_ms * 1000
        whole = max(1, math.floor(frequency))
        interval_us = max(1, math.ceil(window_us / whole))
        catchup_us = min(interval_us // 2, int(margin_ms * 1000 / 2))
        return cls(interval_us, min(interval_us, MAX_TOLERANCE_US), concurrency, catchup_us)

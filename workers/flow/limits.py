"""An integration's limits as the Lua scripts take them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.enums import CADENCE_SECONDS, Cadence
from models.integration import Integration

#: Admissions may run this far ahead of the request slots they will use, so a dispatcher that
#: wakes a little late does not lose throughput; capped by one interval.
MAX_TOLERANCE_US = 50_000


@dataclass(frozen=True)
class Limits:
    #: Spacing of PMS requests (and of admissions), in microseconds.
    interval_us: int
    #: How far admissions may run ahead of the request pacing.
    tolerance_us: int
    #: Most jobs of the integration admitted at once.
    concurrency: int

    @classmethod
    def of(cls, integration: Integration, margin_ms: float) -> Limits:
        return cls.from_values(
            integration.max_request_frequency,
            Cadence(integration.max_request_cadence),
            integration.max_job_concurrency,
            margin_ms,
        )

    @classmethod
    def from_values(
        cls, frequency: float, cadence: Cadence, concurrency: int, margin_ms: float
    ) -> Limits:
        """`frequency` requests per `cadence`, spaced evenly.

        The window is stretched by `margin_ms` so that the jitter between taking a slot and the
        request reaching the PMS cannot squeeze `frequency + 1` requests into one window.
        """
        window_us = CADENCE_SECONDS[cadence] * 1_000_000 + margin_ms * 1000
        interval_us = max(1, math.ceil(window_us / frequency))
        return cls(interval_us, min(interval_us, MAX_TOLERANCE_US), concurrency)

"""Retry delays: exponential with jitter, so a PMS outage is not met by synchronized retries."""

from __future__ import annotations

import random


def retry_delay_s(
    attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Delay before attempt `attempt + 1`, after `attempt` failures (1-based).

    Equal jitter: half the exponential step is kept, half is random, so delays grow
    (base, 2 base, 4 base ... capped) yet never collapse to zero.
    """
    # The exponent is bounded before use, so a very late attempt cannot overflow a float.
    step = min(cap_s, base_s * 2 ** min(max(0, attempt - 1), 64))
    return float(step / 2 + (rng or random).uniform(0, step / 2))

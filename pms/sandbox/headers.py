"""HTTP header names of the PMS dialect, and how numbers are written into headers."""

from __future__ import annotations

#: Request header naming a write's idempotency key (scoped per tenant).
IDEMPOTENCY_KEY = "Idempotency-Key"
#: Response header ("true") on an answer replayed from idempotency memory.
IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
#: Response header on an injected 429: seconds to wait before retrying.
RETRY_AFTER = "Retry-After"
#: Response headers on writes of a tenant with an advertised limit (requests per second).
RATE_LIMIT_LIMIT = "X-RateLimit-Limit"
RATE_LIMIT_REMAINING = "X-RateLimit-Remaining"


def format_header_number(value: float) -> str:
    """`2.0` -> "2", `0.5` -> "0.5": whole numbers are written as integers."""
    return str(int(value)) if float(value).is_integer() else str(value)

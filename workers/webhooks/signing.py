"""HMAC-SHA256 signatures of webhook bodies: `X-Pmsq-Signature: v1=<hex>`, and Propexo's
`propexo-signature: <hex>` beside it (the body alone, for receivers written for Propexo).

The signed message is `f"{timestamp}.{raw_body}"` with `timestamp` the `X-Pmsq-Timestamp`
header (unix seconds), so a captured request cannot be replayed later with a new timestamp.
"""

from __future__ import annotations

import hashlib
import hmac

#: Version prefix of the signature scheme.
SCHEME = "v1"

EVENT_HEADER = "X-Pmsq-Event"
DELIVERY_HEADER = "X-Pmsq-Delivery"
TIMESTAMP_HEADER = "X-Pmsq-Timestamp"
SIGNATURE_HEADER = "X-Pmsq-Signature"
#: Propexo's header: hex(HMAC-SHA256(secret, body)), no timestamp.
PROPEXO_SIGNATURE_HEADER = "propexo-signature"


def propexo_signature(secret: str, body: bytes) -> str:
    """The `propexo-signature` value of `body`."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Pmsq-Signature` value of `body` sent at `timestamp` (unix seconds)."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def verify(
    secret: str,
    header: str,
    timestamp: int,
    body: bytes,
    *,
    now_s: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """What a receiver does: constant-time compare, and refuse stale timestamps if `now_s`."""
    if now_s is not None and abs(now_s - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)

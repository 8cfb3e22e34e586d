"""Short-lived links that carry their own authorisation, like a presigned download URL.

`GET /v1/admin/job-logs/{id}/data` answers a 302 to such a link (as Propexo does), so a client
that drops its bearer token on redirect (as Propexo asks its clients to) still gets the data.
A link names one job log and an expiry, signed with HMAC-SHA256 under a key derived from the
deployment's first secret key; it leaks nothing else and cannot be stretched or moved.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import urlencode

#: How long a link to raw job log data stays valid.
LINK_TTL_S = 300


class SignedLinks:
    def __init__(
        self, secret_key: str, ttl_s: int = LINK_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        """`secret_key`: any secret of the deployment (the first PMSQ_SECRET_KEYS entry); a
        purpose-specific key is derived from it, so the Fernet key itself signs nothing."""
        self._key = hashlib.sha256(b"pmsq job-log data links\x00" + secret_key.encode()).digest()
        self._ttl_s = ttl_s
        self._clock = clock

    def link(self, log_id: str) -> str:
        """The path and query of the raw data of `log_id`, valid for the TTL."""
        expires = int(self._clock()) + self._ttl_s
        query = urlencode({"expires": expires, "signature": self._sign(log_id, expires)})
        return f"/v1/admin/job-logs/{log_id}/raw?{query}"

    def valid(self, log_id: str, expires: int, signature: str) -> bool:
        if expires < self._clock():
            return False
        return hmac.compare_digest(self._sign(log_id, expires), signature)

    def _sign(self, log_id: str, expires: int) -> str:
        message = f"{log_id}\x00{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

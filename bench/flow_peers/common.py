"""What the peers share: the write they send to the sandbox, and the Redis counters they keep.

The peers run in worker processes started by `bench.flow`; everything they need arrives in
environment variables read once per process, so no URL is baked into a message.
"""

from __future__ import annotations

import os

import httpx
import redis

#: Env var: Redis URL (its own database) of the peers' counters.
COUNTER_URL_ENV = "BENCH_FLOW_COUNTER_URL"
#: Env var: base URL of the sandbox PMS (`http://127.0.0.1:PORT`).
SANDBOX_URL_ENV = "BENCH_FLOW_SANDBOX_URL"
#: Redis STRING (integer) per tenant: task executions, whatever their outcome.
EXECUTIONS_KEY = "bench:flow:{tenant}:executions"
#: Redis STRING (integer) per tenant: executions refused by the peer's own rate limiting.
THROTTLED_KEY = "bench:flow:{tenant}:throttled"
#: Seconds one PMS request may take.
HTTP_TIMEOUT_S = 30.0


class PeerContext:
    """One process's HTTP client and counter connection, made on first use (after fork)."""

    def __init__(self) -> None:
        self._http: httpx.Client | None = None
        self._counters: redis.Redis | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=HTTP_TIMEOUT_S)
        return self._http

    @property
    def counters(self) -> redis.Redis:
        if self._counters is None:
            self._counters = redis.Redis.from_url(os.environ[COUNTER_URL_ENV])
        return self._counters

    def count(self, key: str, tenant: str) -> None:
        self.counters.incr(key.format(tenant=tenant))

    def write(self, tenant: str, seq: int) -> None:
        """POST one resident to the tenant; raises on anything but a 2xx."""
        url = f"{os.environ[SANDBOX_URL_ENV]}/t/{tenant}/residents"
        response = self.http.post(url, json={"first_name": f"R{seq}", "last_name": "Bench"})
        response.raise_for_status()

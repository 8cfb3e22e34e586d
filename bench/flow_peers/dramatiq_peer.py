"""dramatiq's rate limiters: `python -m dramatiq bench.flow_peers.dramatiq_peer`.

Broker from `BENCH_FLOW_DRAMATIQ_BROKER_URL`, limiter backend from
`BENCH_FLOW_DRAMATIQ_LIMITS_URL` (both Redis, separate databases). One actor writes for every
integration; each message names its tenant and limits, and the limiters are keyed by tenant:
a `ConcurrentRateLimiter` (the concurrency cap) around a `BucketRateLimiter` (the rate). A
refused acquisition raises `RateLimitExceeded`; the `Retries` middleware puts the message back
after a backoff. The backoff is tuned down from dramatiq's defaults (15 s minimum, 20 retries),
which would drop most of a 2,000-job backlog and take hours, to 100 ms..1 s with no retry cap:
the most favourable setting for this workload that still leaves the retries visible.
Needs `pip install 'dramatiq[redis]'`.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from dramatiq.rate_limits import BucketRateLimiter, ConcurrentRateLimiter, RateLimitExceeded
from dramatiq.rate_limits.backends import RedisBackend

from bench.flow_peers.common import EXECUTIONS_KEY, THROTTLED_KEY, PeerContext

BROKER_URL_ENV = "BENCH_FLOW_DRAMATIQ_BROKER_URL"
LIMITS_URL_ENV = "BENCH_FLOW_DRAMATIQ_LIMITS_URL"
#: Shortest and longest retry backoff (ms) after a refused acquisition.
MIN_BACKOFF_MS = 100
MAX_BACKOFF_MS = 1000
#: Bucket of the rate limiter (ms): `rate` operations per bucket.
BUCKET_MS = 1000

_context = PeerContext()


class CountThrottled(Middleware):
    """Counts, per tenant, the executions that ended in `RateLimitExceeded` (each one a retry)."""

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if isinstance(exception, RateLimitExceeded):
            _context.count(THROTTLED_KEY, message.args[0])


broker = RedisBroker(url=os.environ.get(BROKER_URL_ENV, "redis://127.0.0.1:6379/3"))
broker.add_middleware(CountThrottled())
dramatiq.set_broker(broker)
_backend = RedisBackend(url=os.environ.get(LIMITS_URL_ENV, "redis://127.0.0.1:6379/4"))


@dramatiq.actor(
    actor_name="bench_flow_write",
    max_retries=None,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
)
def write(tenant: str, seq: int, rate: int, concurrency: int) -> None:
    """One write of `tenant`: at most `concurrency` at once and `rate` per bucket."""
    _context.count(EXECUTIONS_KEY, tenant)
    running = ConcurrentRateLimiter(_backend, f"bench-flow:{tenant}:running", limit=concurrency)
    bucket = BucketRateLimiter(_backend, f"bench-flow:{tenant}:rate", limit=rate, bucket=BUCKET_MS)
    with running.acquire(), bucket.acquire():
        _context.write(tenant, seq)

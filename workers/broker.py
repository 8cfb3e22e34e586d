"""The Celery broker's kombu transport: kombu's Redis transport, one Redis client per channel.

kombu's Redis channel makes a new `redis.Redis` for every command it sends outside its
consumer's own client: every message published, among them. That client is only a wrapper
over the channel's connection pool (it holds no connection and is safe to share between
threads), yet building one costs more CPU than the LPUSH it sends. This channel keeps one per
pool; when kombu replaces the pool (after a dropped connection), the next command gets a
client of the new one. Everything else is kombu's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

#: Celery's `broker_transport` for a `redis://` broker.
TRANSPORT = "pmsq.workers.broker:Transport"


class Channel(kombu_redis.Channel):
    _pool_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool_client = self._pool_client
        if pool_client is None or pool_client.connection_pool is not self.pool:
            pool_client = self._pool_client = self._create_client()  # type: ignore[no-untyped-call]
        yield pool_client


class Transport(kombu_redis.Transport):
    Channel = Channel


def broker_transport(url: str) -> str | None:
    """Celery's `broker_transport` for the broker at `url`: this module's for plain Redis
    (`redis://`); None, kombu's pick by the URL's scheme, for any other (TLS, Sentinel)."""
    return TRANSPORT if url.startswith("redis://") else None

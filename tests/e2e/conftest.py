"""One running stack per e2e module and database backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from support.services import RedisServer
from support.stack import Stack

#: Redis database of the e2e broker: never flushed under a running worker, whose queue
#: bindings live there.
E2E_REDIS_DB = 5


@pytest.fixture(scope="module")
def stack(database_url: str, redis_server: RedisServer) -> Iterator[Stack]:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{E2E_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    stack = Stack(database_url, url)
    try:
        yield stack.start()
    finally:
        stack.stop()

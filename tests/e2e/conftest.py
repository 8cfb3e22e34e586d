"""One running stack per e2e module and database backend.

A module that needs its stack to run with other settings overrides `stack_env`; everything
else about the stack (ports, broker database, start and stop) is decided here once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.services import RedisServer
from support.stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Settings (environment variables) this module's stack runs with, on top of `Stack`'s."""
    return {}


@pytest.fixture(scope="module")
def stack(
    database_url: str, redis_server: RedisServer, stack_env: dict[str, str]
) -> Iterator[Stack]:
    """The sandbox PMS, the API and one worker, on this module's database and backend."""
    with running_stack(database_url, redis_server.url, stack_env) as stack:
        yield stack

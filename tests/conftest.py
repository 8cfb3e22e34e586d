"""Fixtures shared by every tier.

Integration and e2e tests get real servers started once per session (`redis_server`,
`postgres_server`) on free ports in temp dirs. Isolation: `redis_url` flushes the database before
each test; `database_url` gives each test module a fresh, migrated database on every backend
(SQLite file, PostgreSQL database), so a module's tests form one contract suite run per backend.

Tests under `tests/integration` and `tests/e2e` are marked `integration` / `e2e` automatically.
Under pytest-xdist (`make test` runs `pytest -n 2`) each worker is a session of its own, with its
own servers; tests are handed out a module and backend at a time (`support.scheduling`).
A missing redis-server or PostgreSQL skips the tests that need it, except under CI, where it fails.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker
from support.services import (
    BinaryNotFoundError,
    PostgresServer,
    RedisClusterGroup,
    RedisSentinelGroup,
    RedisServer,
)

from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.migrate import upgrade

TESTS_DIR = Path(__file__).parent
#: Tier directory -> marker applied to every test collected under it.
TIER_MARKERS = {"integration": "integration", "e2e": "e2e"}
#: PostgreSQL identifiers are at most 63 bytes.
PG_MAX_IDENTIFIER = 63

_database_numbers = itertools.count(1)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(error: BinaryNotFoundError) -> NoReturn:
    """Skip on a developer machine without the server; fail under CI, where it must exist."""
    if _in_ci():
        pytest.fail(f"{error} (CI is set, so this is an error rather than a skip)", pytrace=False)
    pytest.skip(str(error))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `pytest -n N`, hand out whole modules, split by backend (`support.scheduling`)."""
    from support.scheduling import ModuleBackendScheduling  # needs pytest-xdist, as this hook

    return ModuleBackendScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            tier = item.path.relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        marker = TIER_MARKERS.get(tier)
        if marker is not None:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the whole session; tests should use `redis_url` (flushed per test)."""
    try:
        server = RedisServer()
    except BinaryNotFoundError as exc:
        _missing(exc)
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of database 0 of the session's redis-server, emptied before this test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_sentinel_group() -> Iterator[RedisSentinelGroup]:
    """A master, a replica and three sentinels of its own, for a test that kills the master."""
    try:
        group = RedisSentinelGroup()
    except BinaryNotFoundError as exc:
        _missing(exc)
    with group:
        yield group


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterGroup]:
    """A Redis Cluster (3 primaries, a replica each) for the whole session."""
    try:
        cluster = RedisClusterGroup()
    except BinaryNotFoundError as exc:
        _missing(exc)
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the whole session; tests should use `database_url`."""
    try:
        server = PostgresServer()
    except BinaryNotFoundError as exc:
        _missing(exc)
    with server:
        yield server


def _database_name(request: pytest.FixtureRequest) -> str:
    module = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.lower())
    return f"t{next(_database_numbers)}_{module}"[:PG_MAX_IDENTIFIER]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database migrated to head, one per test module and backend.

    Tests using it run once per backend: an SQLite file, and a new PostgreSQL database on the
    session's server (dropped after the module).
    """
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "pmsq.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = _database_name(request)
    url = server.create_database(name)
    try:
        upgrade(url)
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def session_factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on `database_url`; its engine is disposed after the test."""
    engine = make_engine(database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()

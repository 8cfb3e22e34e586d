"""The service fixtures start real servers, isolate tests, and hand out migrated databases."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import redis
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session, sessionmaker
from support.services import PostgresServer, RedisServer

from pmsq.models.db import make_engine

#: Tables the initial migration must create.
EXPECTED_TABLES = {"jobs", "job_logs", "integrations"}


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_redis_server_answers_ping_set_get(redis_client: redis.Redis) -> None:
    assert redis_client.ping() is True
    redis_client.set("pmsq:test:key", "value")
    assert redis_client.get("pmsq:test:key") == "value"


def test_redis_url_points_at_the_session_server(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_url == redis_server.url
    assert redis_url.startswith("redis://127.0.0.1:") and redis_url.endswith("/0")


@pytest.mark.parametrize("run", ["first", "second"])
def test_redis_is_flushed_before_each_test(redis_client: redis.Redis, run: str) -> None:
    # Whichever run goes second would see the other's key if flushdb did not happen per test.
    assert redis_client.dbsize() == 0
    redis_client.set(f"pmsq:test:{run}", "1")
    assert redis_client.dbsize() == 1


def test_postgres_server_reports_its_version(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.url) as conn:
        row = conn.execute("select version()").fetchone()
    assert row is not None and str(row[0]).startswith("PostgreSQL ")


def test_postgres_creates_isolated_databases(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("pmsq_fixture_probe")
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("select current_database()").fetchone()
        assert row == ("pmsq_fixture_probe",)
    finally:
        postgres_server.drop_database("pmsq_fixture_probe")


def test_database_is_migrated_to_head(database_url: str, request: pytest.FixtureRequest) -> None:
    engine = make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        dialect = engine.dialect.name
    finally:
        engine.dispose()
    assert tables >= EXPECTED_TABLES, f"missing: {EXPECTED_TABLES - tables}"
    assert "alembic_version" in tables
    backend = request.node.callspec.params["database_url"]
    assert dialect == backend


def test_session_factory_talks_to_the_database(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        assert session.execute(text("select count(*) from jobs")).scalar_one() == 0

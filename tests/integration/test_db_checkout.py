"""The job store's PostgreSQL pool: a connection the server ended is replaced before it is used
(a restart must not fail a job), and a healthy checkout costs no round trip."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from support.services import PostgresServer

from pmsq.models.db import make_engine

#: Long enough for a terminated backend's goodbye to reach its client on a loaded machine.
DEADLINE_S = 30.0


@pytest.fixture
def engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres_server.url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The connections the pool pinged (a `SELECT 1` round trip each) from now on."""
    pinged: list[Any] = []
    do_ping = engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        pinged.append(dbapi_connection)
        return do_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    return pinged


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_checkout_of_a_healthy_connection_sends_nothing(engine: Engine, pings: list[Any]) -> None:
    first = _backend_pid(engine)

    pids = [_backend_pid(engine) for _ in range(3)]

    assert pids == [first] * 3  # the pooled connection, reused
    assert pings == []


def test_a_connection_whose_backend_was_terminated_is_replaced_on_checkout(
    engine: Engine, pings: list[Any], postgres_server: PostgresServer
) -> None:
    doomed = _backend_pid(engine)  # back in the pool, idle
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (doomed,))
        deadline_s = time.monotonic() + DEADLINE_S
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (doomed,)).fetchone():
            assert time.monotonic() < deadline_s, "the backend did not end"
            time.sleep(0.05)  # polling, with a deadline

    replacement = _backend_pid(engine)

    assert replacement != doomed
    assert len(pings) == 1  # the suspect connection only


def test_pooled_connections_survive_a_server_restart() -> None:
    with PostgresServer() as server:
        engine = make_engine(server.url)
        try:
            with engine.connect() as one, engine.connect() as two:  # two pooled connections
                before = {
                    int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in (one, two)
                }
            server.restart()

            with engine.connect() as one, engine.connect() as two:
                after = {
                    int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in (one, two)
                }
        finally:
            engine.dispose()

    assert len(after) == 2 and not after & before

"""Engine and session factory for the job store.

SQLite is the embedded default and serves one host: WAL so readers never block the writer, a
busy timeout, and `BEGIN IMMEDIATE` so every write transaction takes the write lock up front and
concurrent workers queue for it instead of failing with "database is locked" on lock upgrade.

The session factory's contract: `factory()` is a read session (plain `BEGIN` on SQLite, so
reads never queue behind writers), `factory.begin()` is a write transaction (`BEGIN
IMMEDIATE`). Never write through `factory()`.

PostgreSQL connections are checked on checkout without a round trip (`_check_on_checkout`):
a connection whose server restarted is replaced before anyone uses it, as SQLAlchemy's
`pool_pre_ping` would, without that `SELECT 1` on every checkout.
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 60_000


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """An engine for `database_url`; `postgresql://` URLs use psycopg 3."""
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(database_url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _check_on_checkout(engine)
    return engine


def _check_on_checkout(engine: Engine) -> None:
    """Replace a pooled connection that the server closed (a restart, a terminated backend)
    when it is checked out, before any statement fails on it.

    A server that ends a connection tells its client: an error message and the socket's
    end. An idle connection in the pool is owed nothing, so a socket with something to read
    is suspect; only then is the connection pinged, and dropped (with every connection pooled
    before it) if that fails. A healthy checkout costs one `poll`, not a round trip. The pool
    then connects again; if the server is still down, the checkout raises, as with
    `pool_pre_ping`."""

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if not _has_news(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.InvalidatePoolError(f"connection closed by the server: {error}") from None


def _has_news(dbapi_connection: Any) -> bool:
    """Whether a psycopg connection is broken or its server sent something unasked."""
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below rule
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


#: Execution option marking a read-only connection (plain BEGIN on SQLite).
READ_ONLY_OPTION = "pmsq_read_only"


class StoreSessions(sessionmaker[Session]):
    """`sessions()` reads; `sessions.begin()` writes, taking SQLite's write lock up front."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(
            engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )
        #: What `begin()` writes through (`engine.begin()` is a write transaction too).
        self.engine = engine
        self._writer = sessionmaker(engine, expire_on_commit=False)

    def begin(self) -> Any:
        return self._writer.begin()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return StoreSessions(engine)


def write_engine(factory: sessionmaker[Session]) -> Engine:
    """The engine `factory.begin()` writes through: a hot path's one-statement write runs on
    its connection (`write_engine(factory).begin()`), without a Session's unit of work."""
    if isinstance(factory, StoreSessions):
        return factory.engine
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("the session factory is bound to no engine")
    return bind

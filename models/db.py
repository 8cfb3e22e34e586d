"""Engine and session factory for the job store.

SQLite is the embedded default and serves one host: WAL so readers never block the writer, a
busy timeout, and `BEGIN IMMEDIATE` so every write transaction takes the write lock up front and
concurrent workers queue for it instead of failing with "database is locked" on lock upgrade.

The session factory's contract: `factory()` is a read session (plain `BEGIN` on SQLite, so
reads never queue behind writers), `factory.begin()` is a write transaction (`BEGIN
IMMEDIATE`). Never write through `factory()`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
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
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(database_url, **kwargs)


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
        self._writer = sessionmaker(engine, expire_on_commit=False)

    def begin(self) -> Any:
        return self._writer.begin()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return StoreSessions(engine)

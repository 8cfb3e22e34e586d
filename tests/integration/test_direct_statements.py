"""`DirectStatement` against `Connection.execute`, on every backend: the same statement run
both ways leaves the same bytes in the table and returns the same values, types included
(UTC datetimes tz-aware, naive ones naive, enums, JSON, booleans, floats); errors are raised
as SQLAlchemy raises them, a lost server connection is invalidated as it would be, and
whatever the direct path cannot reproduce goes through SQLAlchemy.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Enum,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    exc,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.sql.compiler import SQLCompiler

from pmsq.models.base import UTCDateTime
from pmsq.models.db import make_engine
from pmsq.models.direct import DirectResult, DirectStatement


class Kind(enum.Enum):
    ONE = "one"
    TWO = "two"


metadata = MetaData()
probe = Table(
    "direct_probe",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=True),
    Column("naive", DateTime(), nullable=True),
    Column("doc", JSON, nullable=True),
    Column("kind", Enum(Kind, name="direct_probe_kind"), nullable=False),
    Column("flag", Boolean, nullable=False),
    Column("ratio", Float, nullable=True),
    Column("note", String(50), nullable=True, default="python-side"),
)
c = probe.c

T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 10, 30, 0, 654321, tzinfo=UTC)

#: Every column from bound parameters (one with a literal value of its own).
INSERT = insert(probe).values(
    id=bindparam("id"),
    n=bindparam("n"),
    at=bindparam("at", type_=c.at.type),
    naive=bindparam("naive", type_=c.naive.type),
    doc=bindparam("doc", type_=c.doc.type),
    kind=bindparam("kind", type_=c.kind.type),
    flag=bindparam("flag", type_=c.flag.type),
    ratio=bindparam("ratio", type_=c.ratio.type),
    note=bindparam("note", value="a default value", type_=c.note.type, required=False),
)
#: A guarded move reading every column back, with literals of its own and `at` twice.
UPDATE = (
    update(probe)
    .where(
        c.id == bindparam("row"),
        c.kind.in_([literal(Kind.ONE, c.kind.type)]),
        c.n < bindparam("below"),
    )
    .values(
        n=c.n + 1,
        at=bindparam("at", type_=c.at.type),
        naive=bindparam("at_naive", type_=c.naive.type),
        doc=bindparam("doc", type_=c.doc.type),
        kind=Kind.TWO,
        flag=True,
        ratio=c.ratio * 2,
        note=None,
    )
    .returning(
        c.id,
        c.n,
        c.at,
        c.naive,
        c.doc,
        c.kind,
        c.flag,
        c.ratio,
        c.note,
        select(probe.c.at).where(probe.c.id == "zz").scalar_subquery(),
    )
)
DIRECT_INSERT = DirectStatement(INSERT)
DIRECT_UPDATE = DirectStatement(UPDATE)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def _row(row_id: str, **values: Any) -> dict[str, Any]:
    return {
        "id": row_id,
        "n": 1,
        "at": T0,
        "naive": datetime(2026, 3, 1, 9, 0),
        "doc": {"a": [1, 2.5, None, "é"], "b": {"c": True}},
        "kind": Kind.ONE,
        "flag": False,
        "ratio": 0.1,
        **values,
    }


def _typed(values: Any) -> list[tuple[str, Any, Any]]:
    """Each value with its type (and a datetime's offset): equal only if identical."""
    return [(type(value).__name__, value, getattr(value, "tzinfo", None)) for value in values]


def _stored(connection: Connection, row_id: str) -> list[tuple[str, Any, Any]]:
    """The row as the driver reads it back, SQLAlchemy's processing aside: what is stored."""
    names = ", ".join(column.name for column in probe.columns if column.name != "id")
    quote = "?" if connection.dialect.name == "sqlite" else "%(id)s"
    sql = f"SELECT {names} FROM direct_probe WHERE id = {quote}"
    params: Any = (row_id,) if connection.dialect.name == "sqlite" else {"id": row_id}
    rows = connection.exec_driver_sql(sql, params).all()
    assert len(rows) == 1
    return _typed(rows[0])


def _through_sqlalchemy(statement: DirectStatement, connection: Connection, params: Any) -> Any:
    result = connection.execute(
        statement.statement, params, execution_options={"preserve_rowcount": True}
    )
    return [tuple(row) for row in result] if result.returns_rows else result.rowcount


def test_an_insert_stores_what_sqlalchemy_stores(engine: Engine) -> None:
    assert DIRECT_INSERT.is_direct(engine.dialect)
    with engine.begin() as connection:
        assert _through_sqlalchemy(DIRECT_INSERT, connection, _row("sa")) == 1
        assert DIRECT_INSERT.execute(connection, _row("direct")) == DirectResult([], 1)
        assert _stored(connection, "direct") == _stored(connection, "sa")
        assert _stored(connection, "sa")[-1][1] == "a default value"

        overridden = _row("sa2", note="given", at=None, doc=None, ratio=None)
        assert _through_sqlalchemy(DIRECT_INSERT, connection, overridden) == 1
        DIRECT_INSERT.execute(connection, {**overridden, "id": "direct2"})
        assert _stored(connection, "direct2") == _stored(connection, "sa2")


def test_an_update_returning_moves_and_returns_what_sqlalchemy_does(engine: Engine) -> None:
    assert DIRECT_UPDATE.is_direct(engine.dialect)
    params = {"at": T1, "at_naive": datetime(2026, 3, 1, 10, 30), "doc": [{"x": 1}], "below": 5}
    with engine.begin() as connection:
        for row_id in ("sa", "direct", "missed"):
            connection.execute(INSERT, _row(row_id))
        expected = _through_sqlalchemy(DIRECT_UPDATE, connection, {**params, "row": "sa"})
        result = DIRECT_UPDATE.execute(connection, {**params, "row": "direct"})
        missed = DIRECT_UPDATE.execute(connection, {**params, "row": "missed", "below": 1})

        assert len(expected) == 1 and result.rowcount == 1
        row = result.one_or_none()
        assert row is not None
        assert _typed(row[1:]) == _typed(expected[0][1:])
        assert row[2] == T1 and row[2].tzinfo is UTC and row[5] is Kind.TWO
        assert _stored(connection, "direct") == _stored(connection, "sa")
        assert (missed.rows, missed.rowcount) == ([], 0)
        assert connection.execute(select(c.n).where(c.id == "missed")).scalar_one() == 1


def test_what_it_did_rolls_back_with_the_transaction(engine: Engine) -> None:
    with engine.connect() as connection:
        with connection.begin() as transaction:
            DIRECT_INSERT.execute(connection, _row("gone"))
            transaction.rollback()
        assert connection.execute(select(c.id)).all() == []


def test_errors_are_raised_as_sqlalchemy_raises_them(engine: Engine) -> None:
    raised: list[tuple[type[BaseException], type[BaseException] | None]] = []
    with engine.begin() as connection:
        connection.execute(INSERT, _row("taken"))
    for run in (
        lambda connection, params: _through_sqlalchemy(DIRECT_INSERT, connection, params),
        DIRECT_INSERT.execute,
    ):
        with engine.connect() as connection:
            for params in (
                _row("taken"),  # a duplicate key: the driver's error
                {key: value for key, value in _row("x").items() if key != "n"},  # no value
                _row("y", at=datetime(2026, 3, 1)),  # a naive datetime for a UTC column
            ):
                with connection.begin(), pytest.raises(exc.StatementError) as error:
                    run(connection, params)
                cause = error.value.orig
                raised.append((type(error.value), None if cause is None else type(cause)))
                assert not connection.invalidated
    half = len(raised) // 2
    assert raised[:half] == raised[half:]
    assert raised[0][0] is exc.IntegrityError


def test_a_lost_server_connection_is_invalidated_as_through_sqlalchemy(
    engine: Engine, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("an SQLite connection is a file: it cannot be lost to a server")
    with engine.connect() as connection:
        connection.begin()
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        with pytest.raises(exc.OperationalError) as error:
            DIRECT_INSERT.execute(connection, _row("lost"))

        assert error.value.connection_invalidated
        assert connection.invalidated
    with engine.begin() as connection:  # the pool connects again
        assert DIRECT_INSERT.execute(connection, _row("after")).rowcount == 1


def test_cursor_listeners_see_every_statement(engine: Engine) -> None:
    """With a listener (tracing, a test's statement counter), SQLAlchemy's path runs."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(engine, "before_cursor_execute", note)
    try:
        with engine.begin() as connection:
            DIRECT_INSERT.execute(connection, _row("seen"))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert seen[-1:] == ["INSERT"]  # after SQLite's BEGIN IMMEDIATE


def test_what_the_direct_path_cannot_reproduce_goes_through_sqlalchemy(engine: Engine) -> None:
    expanding = DirectStatement(
        update(probe).where(c.id.in_(bindparam("ids", expanding=True))).values(n=c.n + 1)
    )
    defaulted = DirectStatement(insert(probe).values(id=bindparam("id"), n=0, kind=Kind.ONE))
    defaulted_flag = DirectStatement(
        insert(probe).values(id=bindparam("id"), n=0, kind=Kind.ONE, flag=False)
    )
    translated = DirectStatement(INSERT.execution_options(schema_translate_map={None: None}))
    assert not translated.is_direct(engine.dialect)
    assert DirectStatement(INSERT.execution_options(preserve_rowcount=True)).is_direct(
        engine.dialect
    )
    assert not expanding.is_direct(engine.dialect)
    assert not defaulted_flag.is_direct(engine.dialect)  # `note` has a Python-side default
    with engine.begin() as connection:
        for row_id in ("a", "b"):
            defaulted_flag.execute(connection, {"id": row_id})
        assert expanding.execute(connection, {"ids": ["a", "b", "c"]}).rowcount == 2
        rows = connection.execute(select(c.id, c.n, c.note).order_by(c.id)).all()
        assert [tuple(row) for row in rows] == [("a", 1, "python-side"), ("b", 1, "python-side")]
    # No transaction: SQLAlchemy begins one (and raises its error: `flag` has no value).
    with engine.connect() as connection, pytest.raises(exc.IntegrityError):
        defaulted.execute(connection, {"id": "no-flag"})


def test_the_sqlalchemy_internals_it_reads_are_still_there(engine: Engine) -> None:
    """`pmsq.models.direct` reads these SQLAlchemy internals: should an upgrade change one,
    this fails here, before any statement goes wrong."""
    compiled = UPDATE.compile(dialect=engine.dialect)
    assert isinstance(compiled, SQLCompiler)
    processors = compiled._bind_processors
    assert set(processors) <= set(compiled.bind_names.values())
    assert all(callable(processor) for processor in processors.values())
    if engine.dialect.name == "sqlite":  # DateTime as text, through UTCDateTime's own step
        assert processors["at"](T1) == "2026-03-01 10:30:00.654321"
    assert [column.type._type_affinity for column in compiled._result_columns][:3] == [
        String,
        Integer,
        DateTime,
    ]
    assert getattr(DefaultExecutionContext, "get_result_processor", None) is not None
    with engine.connect() as connection:
        assert callable(connection._handle_dbapi_exception)
        assert isinstance(connection._echo, bool)
        assert isinstance(connection._has_events, bool)
        assert isinstance(engine._has_events, bool)


def test_a_closed_driver_connection_is_invalidated_as_through_sqlalchemy(engine: Engine) -> None:
    """The driver refuses a cursor on a connection it closed (a server that went away, a
    file closed under it): raised and invalidated as SQLAlchemy's path does."""
    raised = []
    for run in (
        lambda connection, params: _through_sqlalchemy(DIRECT_INSERT, connection, params),
        DIRECT_INSERT.execute,
    ):
        with engine.connect() as connection:
            connection.begin()
            connection.connection.dbapi_connection.close()  # type: ignore[union-attr]
            with pytest.raises(exc.DBAPIError) as error:
                run(connection, _row("closed"))
            raised.append((type(error.value), error.value.connection_invalidated))
            assert connection.invalidated
    assert raised[0] == raised[1]
    assert raised[0][1]
    with engine.begin() as connection:  # the pool connects again
        assert DIRECT_INSERT.execute(connection, _row("after")).rowcount == 1


def test_a_value_its_type_cannot_read_back_raises_as_through_sqlalchemy(engine: Engine) -> None:
    """A value that a result processor refuses (SQLite keeps any text in a DateTime column)
    raises the processor's own error, unwrapped, on both paths."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's timestamp columns hold timestamps only")
    params = {"at": T1, "at_naive": datetime(2026, 3, 1), "doc": None, "below": 5}
    with engine.begin() as connection:
        for row_id in ("sa", "direct", "zz"):
            connection.execute(INSERT, _row(row_id))
        # The row UPDATE's scalar subquery reads `at` of.
        connection.exec_driver_sql("UPDATE direct_probe SET at = 'not a time' WHERE id = 'zz'")
    raised = []
    for row_id, run in (
        ("sa", lambda connection, p: _through_sqlalchemy(DIRECT_UPDATE, connection, p)),
        ("direct", DIRECT_UPDATE.execute),
    ):
        with engine.connect() as connection, connection.begin():
            with pytest.raises(ValueError) as error:
                run(connection, {**params, "row": row_id})
            raised.append((type(error.value), str(error.value)))
            assert not connection.invalidated
    assert raised[0] == raised[1]

"""Hot statements compiled once per database dialect and run on the DBAPI cursor of the
SQLAlchemy Connection already in the caller's transaction.

Why: a worker runs a handful of statements per job (the claim's UPDATE, the outcome's UPDATE,
the job log's INSERT, the admitted jobs' UPDATE, the record cache's upsert), each of which
costs about twice the driver's own work through `Connection.execute`: SQLAlchemy computes the
statement's cache key, builds an execution context, its parameters and a result object at
every execution. A `DirectStatement` does what depends on the dialect alone once per dialect
(the SQL text, the parameters' order and names, each parameter's bind processor and each
RETURNING column's result processor) and at each execution only what SQLAlchemy would do to
the values, on the cursor of the caller's Connection.

What the caller may rely on: the SQL sent, the values bound and the rows returned are
SQLAlchemy's own: its compiled SQL, its bind processors (SQLite's DateTime as text, the
models' UTC datetimes, JSON wrapped for psycopg), the literal and default values of the
statement's bind parameters, the result processors of the RETURNING columns (datetimes come
back tz-aware as through SQLAlchemy, JSON decoded), `rowcount`. The statement runs in the
Connection's transaction, so it commits or rolls back with everything else in it. An error
goes through the Connection's own handler: a driver error is raised wrapped as SQLAlchemy
wraps it (`sqlalchemy.exc.DBAPIError` subclasses), a lost server connection invalidates the
connection and the pool as it would through `execute`, `handle_error` listeners run.

SQLAlchemy's path (`Connection.execute`) runs instead whenever the direct one could differ
from it: a statement with Python-side column defaults to compute, expanding or literal-execute
parameters, a dialect that needs `setinputsizes` or customises result processing, a
Connection that has no active transaction (SQLAlchemy would begin one, or refuse), that logs
its SQL, has cursor-execute listeners (tracing, statement counters in tests: they see every
statement as before) or execution options that change the SQL. `is_direct` says which path
a dialect gets, so a test can hold a hot statement to the direct one.

Parameters name the statement's bind parameters. Unlike `Connection.execute`, naming a
column that the statement does not set adds nothing to an INSERT or UPDATE: such statements
say every column they write in their `values()`. Statements whose parameters change shape per
call (an expanding IN, a list of rows) stay on SQLAlchemy.

SQLAlchemy internals used, and only here (tests/integration/test_direct_statements.py fails
if they change): the compiled statement's `_bind_processors` and `_result_columns`, and the
Connection's `_handle_dbapi_exception`, `_echo` and `_has_events`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.engine.interfaces import BindTyping
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase

#: Execution options (of a Connection or of the statement) under which the statement sent
#: would not be the compiled one.
_SQL_CHANGING_OPTIONS = frozenset({"schema_translate_map", "stream_results", "yield_per"})
#: Dialects a statement keeps a plan for: an engine has one; tests make many, and a plan
#: holds its dialect, so the oldest is dropped past this.
_MAX_DIALECTS = 8

#: SQLAlchemy's path keeps the driver's rowcount of any statement, as the direct one does.
_PRESERVE_ROWCOUNT = {"preserve_rowcount": True}

_Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class DirectResult:
    """What one execution returned: the RETURNING rows (plain tuples, processed as
    SQLAlchemy processes them) and the driver's `rowcount` (an INSERT's too, as SQLAlchemy's
    `preserve_rowcount` keeps it)."""

    rows: list[tuple[Any, ...]]
    rowcount: int

    def one_or_none(self) -> tuple[Any, ...] | None:
        """The only row, None for none; raises `MultipleResultsFound` as SQLAlchemy does."""
        if len(self.rows) > 1:
            raise exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return self.rows[0] if self.rows else None


@dataclass(frozen=True)
class _Slot:
    """One parameter sent to the driver: where its value comes from and how it is bound."""

    #: The bind parameter's key, then its compiled name: looked up in the caller's parameters
    #: in that order, as `SQLCompiler.construct_params` does.
    key: str
    name: str
    #: Name in the driver's parameter dict (named paramstyles).
    sent_as: str
    required: bool
    #: The bind parameter's own value, or the callable giving it, when none is passed.
    value: Any
    value_callable: Callable[[], Any] | None
    processor: _Processor | None


class _Plan:
    """A statement compiled for one dialect, with what each execution needs."""

    def __init__(self, compiled: SQLCompiler, dialect: Dialect) -> None:
        self.sql = compiled.string
        self.positional = compiled.positional
        self.sequence: Callable[[list[Any]], Sequence[Any]] = dialect.execute_sequence_format
        processors: Mapping[str, Any] = compiled._bind_processors
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        escaped = compiled.escaped_bind_names
        names = list(compiled.positiontup or ()) if compiled.positional else list(by_name)
        self.slots = tuple(
            _Slot(
                key=by_name[name].key,
                name=name,
                sent_as=escaped.get(name, name),
                required=by_name[name].required,
                value=by_name[name].value,
                value_callable=by_name[name].callable,
                processor=processors.get(name),
            )
            for name in names
        )
        columns = compiled._result_columns if compiled.returning else None
        self.result_types = None if not columns else [column.type for column in columns]
        self.dialect = dialect
        #: Each RETURNING column's result processor, from the first execution's cursor
        #: description (as SQLAlchemy caches a compiled statement's result metadata).
        self.result_processors: list[tuple[int, _Processor]] | None = None

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """What the driver is sent for `params`: `construct_params` and the bind processors."""
        values: list[Any] = []
        for slot in self.slots:
            if slot.key in params:
                value = params[slot.key]
            elif slot.name in params:
                value = params[slot.name]
            elif slot.required:
                raise exc.InvalidRequestError(
                    f"A value is required for bind parameter {slot.key!r}", code="cd3x"
                )
            elif slot.value_callable is not None:
                value = slot.value_callable()
            else:
                value = slot.value
            values.append(value if slot.processor is None else slot.processor(value))
        if self.positional:
            return self.sequence(values)
        return {slot.sent_as: value for slot, value in zip(self.slots, values, strict=True)}

    def processed(
        self, rows: Sequence[Any], description: Sequence[Any] | None
    ) -> list[tuple[Any, ...]]:
        """`rows` through the RETURNING columns' result processors, found from the cursor's
        `description` at the first execution that returned rows."""
        if not rows:
            return []
        processors = self.result_processors
        if processors is None:
            assert description is not None
            processors = self.result_processors = self._result_processors(description)
        if not processors:
            return [tuple(row) for row in rows]
        processed = []
        for row in rows:
            values = list(row)
            for index, processor in processors:
                values[index] = processor(values[index])
            processed.append(tuple(values))
        return processed

    def _result_processors(self, description: Sequence[Any]) -> list[tuple[int, _Processor]]:
        """Each RETURNING column's result processor, for the driver's type of it
        (`DefaultExecutionContext.get_result_processor`); only those that do something."""
        assert self.result_types is not None
        if len(description) != len(self.result_types):
            raise exc.InvalidRequestError("RETURNING columns differ from the compiled ones")
        found: list[tuple[int, _Processor]] = []
        for index, (type_, column) in enumerate(zip(self.result_types, description, strict=True)):
            processor = type_.dialect_impl(self.dialect).result_processor(self.dialect, column[1])
            if processor is not None:
                found.append((index, processor))
        return found


def _plan_for(statement: UpdateBase, dialect: Dialect) -> _Plan | None:
    """The statement's plan for `dialect`; None when only SQLAlchemy's path is exact."""
    context = dialect.execution_ctx_cls
    if (
        dialect.bind_typing is BindTyping.SETINPUTSIZES
        or getattr(context, "get_result_processor", None)
        is not DefaultExecutionContext.get_result_processor
        or getattr(context, "pre_exec", None) is not DefaultExecutionContext.pre_exec
        or getattr(context, "post_exec", None) is not DefaultExecutionContext.post_exec
    ):
        return None
    if not _SQL_CHANGING_OPTIONS.isdisjoint(statement.get_execution_options()):
        return None
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler) or (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.implicit_returning
        or compiled.for_executemany
    ):
        return None
    if compiled.returning and not compiled._result_columns:
        return None
    return _Plan(compiled, dialect)


class DirectStatement:
    """A Core statement run on the cursor of the caller's Connection, compiled once per
    dialect (module docstring). Build one per statement, once, at import."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._plans: dict[Dialect, _Plan | None] = {}

    def is_direct(self, dialect: Dialect) -> bool:
        """Whether executions on `dialect` take the direct path (connections permitting)."""
        return self._plan(dialect) is not None

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> DirectResult:
        """Run the statement with `params` in `connection`'s transaction; the rows it
        returned and its rowcount. Raises what `connection.execute` would."""
        plan = self._plan(connection.dialect)
        if plan is None or not _plain(connection):
            return self._through_sqlalchemy(connection, params)
        # Raises as `execute` does (PendingRollbackError, ResourceClosedError, a failed
        # reconnection wrapped) when the connection was invalidated or closed.
        dbapi_connection = connection.connection
        try:
            values = plan.parameters(params)
            cursor = dbapi_connection.cursor()
        except BaseException as error:  # wrapped as `execute` wraps it (a StatementError)
            connection._handle_dbapi_exception(error, plan.sql, params, None, None)
        description = None
        try:
            cursor.execute(plan.sql, values)
            fetched = [] if plan.result_types is None else cursor.fetchall()
            if fetched and plan.result_processors is None:
                description = cursor.description
            rowcount = cursor.rowcount
        except BaseException as error:
            connection._handle_dbapi_exception(error, plan.sql, values, cursor, None)
        cursor.close()
        # Processed once fetched, as a SQLAlchemy result's rows are: outside the handler.
        return DirectResult(plan.processed(fetched, description), rowcount)

    def _through_sqlalchemy(
        self, connection: Connection, params: Mapping[str, Any]
    ) -> DirectResult:
        result = connection.execute(self.statement, params, execution_options=_PRESERVE_ROWCOUNT)
        rows = [tuple(row) for row in result] if result.returns_rows else []
        return DirectResult(rows, result.rowcount)

    def _plan(self, dialect: Dialect) -> _Plan | None:
        try:
            return self._plans[dialect]
        except KeyError:
            plan = _plan_for(self.statement, dialect)
            if len(self._plans) >= _MAX_DIALECTS:
                self._plans.pop(next(iter(self._plans)), None)
            self._plans[dialect] = plan
            return plan


def _plain(connection: Connection) -> bool:
    """Whether `connection` executes a compiled statement with nothing around the cursor's
    execute: an active transaction, no SQL logging, no cursor-execute listeners, no
    execution option that changes the statement."""
    transaction = connection.get_transaction()
    if transaction is None or not transaction.is_active:
        return False
    nested = connection.get_nested_transaction()
    if nested is not None and not nested.is_active:
        return False
    if connection._echo:
        return False
    if connection._has_events or connection.engine._has_events:
        dispatch = connection.dispatch
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            return False
    if connection.dialect._has_events and connection.dialect.dispatch.do_execute:
        return False
    options = connection.get_execution_options()
    return not options or options.keys().isdisjoint(_SQL_CHANGING_OPTIONS)

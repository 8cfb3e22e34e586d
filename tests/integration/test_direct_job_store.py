"""The worker's hot statements, run directly on the connection's cursor (`DirectStatement`),
leave the rows and return the values (types included) that SQLAlchemy's `Connection.execute`
leaves and returns, on every backend.

Each test runs one statement both ways on two rows alike but for their ids: once with every
`DirectStatement` sent through SQLAlchemy, once with SQLAlchemy's path forbidden (so the
direct path did run), then compares what each returned and the rows as the driver reads them
back (SQLite's datetimes as stored text, PostgreSQL's as timestamps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from support.store import add_root_job, add_unthrottled_integration

from pmsq.api.services import writes
from pmsq.api.services.write_targets import read_owned
from pmsq.models.base import new_id
from pmsq.models.db import write_engine
from pmsq.models.direct import DirectStatement
from pmsq.models.enums import JobStatus
from pmsq.models.sync import SyncExecution, SyncType
from pmsq.workers import repository
from pmsq.workers.aggregator import FinishedRoot, finish_running_root
from pmsq.workers.record_cache import write_record
from pmsq.workers.transitions import requeued

T0 = datetime(2026, 3, 1, 9, 0, 0, 250000, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 9, 0, 5, 500001, tzinfo=UTC)
#: Columns that name a row (differ between the two rows compared) rather than describe it.
NAMING = {"id", "root_job_id", "idempotency_key", "job_id"}

R = TypeVar("R")
Path = Callable[[], AbstractContextManager[None]]


class Store:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self.engine: Engine = write_engine(session_factory)
        self.account_id, self.integration_id = add_unthrottled_integration(session_factory)

    def add_job(self, status: JobStatus, **columns: Any) -> str:
        return add_root_job(
            self.session_factory,
            self.account_id,
            self.integration_id,
            T0,
            status=status,
            payload={"first_name": "Ada", "tags": ["a", 1, None], "n": 2.5},
            **columns,
        )

    def stored(self, table: str, key: str, value: str) -> dict[str, Any]:
        """The row as the driver reads it (SQLAlchemy's type processing aside), with each
        value's type, but the columns that name it."""
        with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            where = f"{key} = ?" if sqlite else f"{key} = %(value)s"
            params: Any = (value,) if sqlite else {"value": value}
            result = connection.exec_driver_sql(f"SELECT * FROM {table} WHERE {where}", params)
            rows = [row._asdict() for row in result]
        assert len(rows) == 1
        return {name: _typed(v) for name, v in rows[0].items() if name not in NAMING}


def _typed(value: Any) -> tuple[str, Any, Any]:
    return (type(value).__name__, value, getattr(value, "tzinfo", None))


def _typed_fields(found: Any) -> dict[str, tuple[str, Any, Any]]:
    return {name: _typed(v) for name, v in asdict(found).items() if name not in NAMING}


@pytest.fixture
def store(session_factory: sessionmaker[Session]) -> Store:
    return Store(session_factory)


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(through SQLAlchemy, direct): context managers to run statements in."""

    @contextmanager
    def through_sqlalchemy() -> Iterator[None]:
        with monkeypatch.context() as patch:
            patch.setattr(DirectStatement, "execute", DirectStatement._through_sqlalchemy)
            yield

    @contextmanager
    def direct() -> Iterator[None]:
        executed: list[DirectStatement] = []
        execute = DirectStatement.execute

        def noted(self: DirectStatement, *args: Any) -> Any:
            executed.append(self)
            return execute(self, *args)

        def refused(*_args: Any) -> Any:
            raise AssertionError("a hot statement went through SQLAlchemy's path")

        with monkeypatch.context() as patch:
            patch.setattr(DirectStatement, "execute", noted)
            patch.setattr(DirectStatement, "_through_sqlalchemy", refused)
            yield
        assert executed, "no statement ran directly"

    return through_sqlalchemy, direct


def both_ways(
    store: Store, paths: tuple[Path, Path], run: Callable[[Connection, str], R], ids: list[str]
) -> list[R]:
    """`run(connection, id)` in a write transaction, through SQLAlchemy for the first id and
    directly for the second."""
    found: list[R] = []
    for path, row_id in zip(paths, ids, strict=True):
        with path(), store.engine.begin() as connection:
            found.append(run(connection, row_id))
    return found


def test_a_claims_update_is_sqlalchemys(store: Store, paths: tuple[Path, Path]) -> None:
    ids = [store.add_job(JobStatus.QUEUED, outcome_unknown=True) for _ in range(2)]

    def claim(connection: Connection, job_id: str) -> repository.StartedRun | None:
        return repository.start_run(connection, job_id, T1, 5, T1 + timedelta(seconds=30))

    started = both_ways(store, paths, claim, ids)

    assert started[0] is not None and started[1] is not None
    assert _typed_fields(started[0]) == _typed_fields(started[1])
    assert started[1].created_at == T0 and started[1].created_at.tzinfo is UTC
    assert started[1].payload == {"first_name": "Ada", "tags": ["a", 1, None], "n": 2.5}
    assert started[1].integration_version is not None
    assert store.stored("jobs", "id", ids[0]) == store.stored("jobs", "id", ids[1])
    # Not QUEUED any more: neither path matches a row.
    assert both_ways(store, paths, claim, ids) == [None, None]


def _running(store: Store) -> str:
    return store.add_job(
        JobStatus.RUNNING, deliveries=1, attempts=1, unrecorded_claims=1, lease_expires_at=T0
    )


def test_a_guarded_retry_is_sqlalchemys(store: Store, paths: tuple[Path, Path]) -> None:
    ids = [_running(store) for _ in range(2)]
    fence = {"deliveries": 1, "attempts": 1, "outcome_unknown": False, "error": None}

    def retry(connection: Connection, job_id: str) -> repository.MovedJob | None:
        values = requeued(job_id, JobStatus.RUNNING, T1, T1 + timedelta(seconds=7))
        values.update(unrecorded_claims=0, attempts=1, outcome_unknown=True, error="timeout")
        guard = {**fence, "status": JobStatus.RUNNING.value}
        return repository.move_job_if(connection, job_id, guard, values)

    moved = both_ways(store, paths, retry, ids)

    assert moved[0] is not None and moved[1] is not None
    assert _typed_fields(moved[0]) == _typed_fields(moved[1])
    assert moved[1].created_at == T0 and moved[1].created_at.tzinfo is UTC
    assert store.stored("jobs", "id", ids[0]) == store.stored("jobs", "id", ids[1])
    # The fence no longer holds (the job is PENDING): neither path moves it.
    assert both_ways(store, paths, retry, ids) == [None, None]


def test_a_roots_one_update_outcome_is_sqlalchemys(store: Store, paths: tuple[Path, Path]) -> None:
    ids = [_running(store) for _ in range(2)]

    def finish(connection: Connection, job_id: str) -> FinishedRoot | None:
        with Session(bind=connection) as session:
            return finish_running_root(
                connection,
                session,
                job_id,
                JobStatus.SUCCESS,
                T1,
                expected={"deliveries": 1, "attempts": 1, "outcome_unknown": False},
                also={"unrecorded_claims": 0},
                listeners=lambda _account_id, _version: [],
                created_record_id="rec-1",
            )

    finished = both_ways(store, paths, finish, ids)

    assert finished[0] is not None and finished[1] is not None
    assert _typed_fields(finished[0]) == _typed_fields(finished[1])
    assert finished[1].complete and finished[1].accepted_at == T0
    rows = [store.stored("jobs", "id", job_id) for job_id in ids]
    assert rows[0] == rows[1]
    assert rows[1]["tree_created_record_id"][1] == "rec-1"


def test_a_runs_job_log_row_is_sqlalchemys(store: Store, paths: tuple[Path, Path]) -> None:
    job_id = _running(store)
    ids = [new_id(), new_id()]

    def log(connection: Connection, log_id: str) -> None:
        row = {
            "id": log_id,
            "job_id": job_id,
            "attempt": 1,
            "method": "POST",
            "url": "https://pms.example/residents",
            "request_headers": {"Authorization": "[redacted]", "X-N": ["1", "2"]},
            "request_body": '{"first_name": "Ada"}',
            "response_status": 201,
            "response_headers": {},
            "response_body": None,
            "duration_ms": 12.375,
            "error": None,
            "created_at": T1,
        }
        repository.add_job_logs(connection, [row])

    both_ways(store, paths, log, ids)

    rows = [store.stored("job_logs", "id", log_id) for log_id in ids]
    assert rows[0] == rows[1]
    assert rows[1]["duration_ms"][1] == 12.375


def test_an_admitted_jobs_queueing_is_sqlalchemys(store: Store, paths: tuple[Path, Path]) -> None:
    ids = [store.add_job(JobStatus.PENDING) for _ in range(2)]

    def queue(connection: Connection, job_id: str) -> dict[str, repository.QueuedJob]:
        return repository.queue_admitted(connection, [job_id], T1)

    queued = both_ways(store, paths, queue, ids)

    assert [list(found) for found in queued] == [[ids[0]], [ids[1]]]
    assert _typed_fields(queued[0][ids[0]]) == _typed_fields(queued[1][ids[1]])
    assert store.stored("jobs", "id", ids[0]) == store.stored("jobs", "id", ids[1])
    # No longer PENDING: neither path queues it again.
    assert both_ways(store, paths, queue, ids) == [{}, {}]


def test_a_written_records_upsert_is_sqlalchemys(store: Store, paths: tuple[Path, Path]) -> None:
    with store.session_factory.begin() as session:
        session.add(
            SyncExecution(
                integration_id=store.integration_id, type=SyncType.SCHEDULED.value, generation=4
            )
        )
    ids = ["pms-1", "pms-2"]

    def cache(connection: Connection, pms_id: str) -> None:
        data = {"id": pms_id, "first_name": "Ada", "tags": ["a", None], "n": 1.5}
        write_record(connection, store.integration_id, "residents", data, T1, {})

    for _ in range(2):  # an insert, then an update of the same records
        both_ways(store, paths, cache, ids)
        rows = [store.stored("records", "pms_id", pms_id) for pms_id in ids]
        # Alike but for the PMS id, in its column and in the data (as stored: SQLite's text).
        assert repr(rows[1]).replace("pms-2", "pms-1") == repr(rows[0])
        assert rows[1]["seen_generation"][1] == 4


def test_a_writes_root_job_insert_is_sqlalchemys(store: Store, paths: tuple[Path, Path]) -> None:
    """The API's INSERT ... SELECT, on the connection a write without a key takes (in
    autocommit on PostgreSQL), inserts alike both ways, and neither inserts once the
    integration changed from what the write was judged on."""
    engine = store.engine
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    with store.engine.connect() as connection:
        target = read_owned(connection, store.account_id, store.integration_id)
    ids = [new_id(), new_id()]

    def insert(job_ids: list[str], **changed: Any) -> list[int]:
        counts = []
        for path, job_id in zip(paths, job_ids, strict=True):
            values = {
                "id": job_id,
                "root_job_id": job_id,
                "model": "residents",
                "action": "CREATE",
                "target_id": None,
                "payload": {"first_name": "Ada", "n": [1.5, None]},
                "due_at": T0,
                "created_at": T0,
                "updated_at": T0,
                "idempotency_key": new_id(),
            }
            with path(), engine.begin() as connection:
                params = values | target.unchanged_params() | changed
                counts.append(writes._INSERT_ROOT_JOB.execute(connection, params).rowcount)
        return counts

    assert insert(ids) == [1, 1]
    assert store.stored("jobs", "id", ids[0]) == store.stored("jobs", "id", ids[1])
    assert insert([new_id(), new_id()], target_vendor="OTHER") == [0, 0]

"""Job-store queries the workers and the API share. All SQL of the job tree lives here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    ScalarSelect,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from pmsq.models.account import Account
from pmsq.models.direct import DirectStatement
from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job, JobLog
from pmsq.workers.transitions import ALLOWED

#: The tables, for the core statements of the worker's hot path (no unit of work, no identity
#: map: a claim is one UPDATE and its result row, a run's job logs one INSERT).
_JOBS = cast(Table, Job.__table__)
_JOB_LOGS = cast(Table, JobLog.__table__)
#: A run's job-log rows, built once (`add_logs`).
_ADD_LOGS = insert(_JOB_LOGS)
#: A run's one job-log row (its usual), every column a parameter, run directly on the
#: record's connection (`DirectStatement`).
_ADD_LOG = DirectStatement(
    insert(_JOB_LOGS).values(
        {column.key: bindparam(column.key, type_=column.type) for column in _JOB_LOGS.columns}
    )
)
#: Statuses the state machine lets a job move to RUNNING from (QUEUED).
_CLAIMABLE = [status.value for status, moves in ALLOWED.items() if JobStatus.RUNNING in moves]
#: `session.info` key: (the transaction, ids of the jobs it row-locked through `lock`).
_LOCKED_KEY = "pmsq_locked_jobs"


def _integration_version() -> ScalarSelect[datetime]:
    """The job's integration's `updated_at`, read in a statement on the job: the version of
    what a worker keeps of the integration (its snapshot, its enum mappings)."""
    return (
        select(Integration.updated_at)
        .where(Integration.id == _JOBS.c.integration_id)
        .scalar_subquery()
    )


def _webhooks_version() -> ScalarSelect[int]:
    """The job's account's `webhooks_version`, read in a statement on the job: the version
    of the account's webhook endpoints a worker keeps."""
    return (
        select(Account.webhooks_version).where(Account.id == _JOBS.c.account_id).scalar_subquery()
    )


def _queue_admitted(job_is: ColumnElement[bool]) -> Update:
    """Admitted jobs (those `job_is` picks) PENDING -> QUEUED, returning what publishing
    needs of each."""
    return (
        update(_JOBS)
        .where(job_is, _JOBS.c.status == JobStatus.PENDING.value)
        .values(
            status=JobStatus.QUEUED.value,
            due_at=None,
            updated_at=bindparam("now", type_=_JOBS.c.updated_at.type),
        )
        .returning(
            _JOBS.c.id,
            _JOBS.c.integration_id,
            _JOBS.c.model,
            _JOBS.c.action,
            _JOBS.c.root_job_id,
        )
    )


#: Admitted jobs PENDING -> QUEUED, built once: it runs for every admission, in every worker
#: and API process, and building a statement costs more than running it. The guard on
#: PENDING is the state machine's (`transition` allows QUEUED from PENDING alone), in SQL, so
#: the batch takes one round trip and needs no row lock of its own. `updated_at` is what the
#: healer's stale-QUEUED sweep measures from; `due_at` is a PENDING job's only.
_QUEUE_ADMITTED = _queue_admitted(_JOBS.c.id.in_(bindparam("job_ids", expanding=True)))
#: The same for a batch of one, the usual admission (a finish hands its slot to the next job):
#: an expanding IN is rendered again at every execution, a plain bound id is not.
_QUEUE_ONE_ADMITTED = DirectStatement(_queue_admitted(_JOBS.c.id == bindparam("job_id")))


def _start_run() -> Update:
    """The claim's UPDATE ... RETURNING, built once: a claim only binds its parameters
    (`job_id`, `now`, `max_unrecorded_claims`, `lease_until`), so no claim pays for
    building the statement or its cache key again."""
    c = _JOBS.c
    now = bindparam("now", type_=c.updated_at.type)
    return (
        update(_JOBS)
        .where(
            c.id == bindparam("job_id"),
            # One bound value per status, not an expanding IN rendered again per execution.
            c.status.in_([literal(status, c.status.type) for status in _CLAIMABLE]),
            c.unrecorded_claims < bindparam("max_unrecorded_claims"),
        )
        .values(
            status=JobStatus.RUNNING.value,
            deliveries=c.deliveries + 1,
            attempts=c.attempts + 1,
            unrecorded_claims=c.unrecorded_claims + 1,
            started_at=now,
            updated_at=now,
            lease_expires_at=bindparam("lease_until", type_=c.lease_expires_at.type),
        )
        .returning(
            c.id,
            c.root_job_id,
            c.integration_id,
            c.deliveries,
            c.attempts,
            c.model,
            c.action,
            c.target_id,
            c.payload,
            c.idempotency_key,
            c.outcome_unknown,
            c.created_at,
            _integration_version(),
        )
    )


#: Run on the claim's connection directly (`DirectStatement`): every delivery runs it.
_START_RUN = DirectStatement(_start_run())
#: A claim's lease expiry, stamped once Redis granted the lease (`job_id`, `expires_at`, `now`).
_SET_LEASE = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("job_id"))
    .values(
        lease_expires_at=bindparam("expires_at", type_=_JOBS.c.lease_expires_at.type),
        updated_at=bindparam("now", type_=_JOBS.c.updated_at.type),
    )
)


@dataclass(frozen=True)
class StartedRun:
    """What a claim needs of the job it moved to RUNNING, read back by the same UPDATE."""

    id: str
    root_job_id: str
    integration_id: str
    #: The new delivery number: the claim's fencing token.
    deliveries: int
    attempts: int
    model: str
    action: str
    target_id: str | None
    payload: dict[str, Any]
    idempotency_key: str
    outcome_unknown: bool
    created_at: datetime
    #: The integration's `updated_at` (None if the integration is gone): the version of what
    #: the claim would read of it.
    integration_version: datetime | None


@dataclass(frozen=True)
class QueuedJob:
    """What publishing needs of a job admission moved to QUEUED, read back by the UPDATE."""

    id: str
    integration_id: str
    model: str
    action: str
    root_job_id: str


def queue_admitted(
    connection: Connection, job_ids: Sequence[str], now: datetime
) -> dict[str, QueuedJob]:
    """Move those of `job_ids` that are PENDING to QUEUED (stamped `now`) in one statement,
    keyed by id; a job missing from the result was unknown or no longer PENDING. The rows stay
    locked until the transaction ends.

    On a plain connection (`write_engine(factory).begin()`), not a Session: every admission
    in every worker and API process runs it, and a Session's unit of work would cost more than
    the statement. No Session takes part, so none holds a copy of a moved job to expire."""
    if not job_ids:
        return {}
    rows: Sequence[Sequence[Any]]
    if len(job_ids) == 1:  # directly on the connection (`DirectStatement`)
        rows = _QUEUE_ONE_ADMITTED.execute(connection, {"job_id": job_ids[0], "now": now}).rows
    else:
        rows = connection.execute(_QUEUE_ADMITTED, {"job_ids": list(job_ids), "now": now}).all()
    return {row[0]: QueuedJob(*row) for row in rows}


def start_run(
    connection: Connection,
    job_id: str,
    now: datetime,
    max_unrecorded_claims: int,
    lease_expires_at: datetime | None = None,
) -> StartedRun | None:
    """QUEUED -> RUNNING in one statement that also counts the claim (a new delivery number,
    an attempt, an unrecorded claim), stamps `lease_expires_at` and reads back what the run
    needs; the row stays locked until the transaction ends.

    None when the job is unknown, not QUEUED, or has `max_unrecorded_claims` unrecorded
    claims already (a poison message): the caller tells which under `JobRepository.lock`.
    The lease expiry is the claim's guess of what Redis will grant (None when it has none);
    `set_lease` corrects it in the same transaction when the guess was off.

    On a plain connection (`write_engine(factory).begin()`), like `queue_admitted`: every
    delivery runs it, and a Session around one statement costs more than the statement. A
    Session that joins the connection's transaction afterwards (the rare paths) loads the
    row as this statement left it."""
    row = _START_RUN.execute(
        connection,
        {
            "job_id": job_id,
            "now": now,
            "max_unrecorded_claims": max_unrecorded_claims,
            "lease_until": lease_expires_at,
        },
    ).one_or_none()
    return None if row is None else StartedRun(*row)


def set_lease(connection: Connection, job_id: str, expires_at: datetime, now: datetime) -> None:
    """Stamp a RUNNING job's lease expiry (on Redis's clock) in the claim's transaction."""
    connection.execute(_SET_LEASE, {"job_id": job_id, "expires_at": expires_at, "now": now})


@dataclass(frozen=True)
class LockedJob:
    """A job row-locked for its outcome, with the versions of what recording it reads."""

    job: Job
    #: The integration's `updated_at`: the version of its enum mappings.
    integration_version: datetime | None
    #: The account's `webhooks_version`: the version of its webhook endpoints.
    webhooks_version: int | None


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, job_id: str) -> Job | None:
        return self.session.get(Job, job_id)

    def get_for_account(self, job_id: str, account_id: str) -> Job | None:
        job = self.session.get(Job, job_id)
        return job if job is not None and job.account_id == account_id else None

    def lock(self, job_id: str) -> Job | None:
        """The job, row-locked until the transaction ends (PostgreSQL; SQLite locks the file).

        A job this transaction already locked is returned as the session holds it, without
        asking the database again: nobody else can have changed the row since (the record
        step locks a root job, then the aggregator locks its root: one SELECT, not two)."""
        if job_id in self._locked():
            job = self.session.get(Job, job_id)
            if job is not None:
                return job
        stmt = (
            select(Job)
            .where(Job.id == job_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        job = self.session.scalars(stmt).one_or_none()
        if job is not None:
            self._locked().add(job_id)
        return job

    def _locked(self) -> set[str]:
        """Ids of the jobs `lock` row-locked in the session's current transaction."""
        transaction = self.session.get_transaction()
        held: tuple[object, set[str]] | None = self.session.info.get(_LOCKED_KEY)
        if held is None or held[0] is not transaction:
            held = (transaction, set())
            self.session.info[_LOCKED_KEY] = held
        return held[1]

    def add_logs(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert job-log rows (every `JobLog` column, `id` included) in one statement.

        On the session's connection (no ORM execution, no autoflush), and a single row, a
        run's usual, as one execution rather than an `executemany` of one."""
        add_job_logs(self.session.connection(), rows)

    def integration(self, integration_id: str) -> Integration | None:
        return self.session.get(Integration, integration_id)

    def due_pending_page(
        self, due_before: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Job]:
        """PENDING jobs due before `due_before`, in (due_at, id) order after `after`."""
        stmt = select(Job).where(Job.status == JobStatus.PENDING.value, Job.due_at <= due_before)
        if after is not None:
            due_at, job_id = after
            stmt = stmt.where(or_(Job.due_at > due_at, and_(Job.due_at == due_at, Job.id > job_id)))
        return self.session.scalars(stmt.order_by(Job.due_at, Job.id).limit(limit)).all()

    def integration_versions(self, integration_ids: Sequence[str]) -> dict[str, datetime]:
        """`updated_at` of each of the integrations that exists."""
        stmt = select(Integration.id, Integration.updated_at).where(
            Integration.id.in_(integration_ids)
        )
        return {row.id: row.updated_at for row in self.session.execute(stmt)}

    def expired_running_ids(self, now: datetime, limit: int) -> Sequence[str]:
        stmt = (
            select(Job.id)
            .where(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now)
            .limit(limit)
        )
        return self.session.scalars(stmt).all()

    def stale_queued_ids(self, before: datetime, limit: int) -> Sequence[str]:
        stmt = (
            select(Job.id)
            .where(Job.status == JobStatus.QUEUED.value, Job.updated_at < before)
            .limit(limit)
        )
        return self.session.scalars(stmt).all()

    def failed_in_tree(self, root_job_id: str) -> Sequence[Job]:
        """Failed jobs of the tree in the order they failed."""
        stmt = (
            select(Job)
            .where(Job.root_job_id == root_job_id, Job.status == JobStatus.FAILURE.value)
            .order_by(Job.finish_seq)
        )
        return self.session.scalars(stmt).all()

    def tree(self, root_job_id: str) -> Sequence[Job]:
        stmt = select(Job).where(Job.root_job_id == root_job_id).order_by(Job.created_at, Job.id)
        return self.session.scalars(stmt).all()

    def logs(self, job_id: str) -> Sequence[JobLog]:
        stmt = select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.created_at)
        return self.session.scalars(stmt).all()

    def lock_with_versions(self, job_id: str) -> LockedJob | None:
        """`lock`, reading in the same statement the versions of the job's integration and of
        its account's webhook endpoints, which caches of them are keyed by (no more queries
        while neither moved)."""
        row = self.session.execute(_LOCK_WITH_VERSIONS, {"job_id": job_id}).one_or_none()
        if row is None:
            return None
        self._locked().add(job_id)
        job, integration_version, webhooks_version = row
        return LockedJob(job, integration_version, webhooks_version)


def _lock_with_versions() -> Select[Job, datetime | None, int | None]:
    """`lock_with_versions`'s statement, built once: its only value is a parameter."""
    return (
        select(Job, _integration_version(), _webhooks_version())
        .where(Job.id == bindparam("job_id"))
        .with_for_update(of=Job)
        .execution_options(populate_existing=True)
    )


_LOCK_WITH_VERSIONS = _lock_with_versions()


@dataclass(frozen=True)
class MovedJob:
    """What a guarded move of a job (`move_job_if`) read back in its own UPDATE."""

    account_id: str
    action: str
    created_at: datetime
    #: As `LockedJob`'s: the versions of what recording an outcome reads.
    integration_version: datetime | None
    webhooks_version: int | None


def move_job_if(
    connection: Connection, job_id: str, expected: Mapping[str, Any], values: Mapping[str, Any]
) -> MovedJob | None:
    """Set `values` (column -> value) on the job if its columns still hold `expected` (column
    -> value, NULL too), in one UPDATE that reads back what recording an outcome needs; the
    row stays locked until the transaction ends. None, and nothing changed, when the job is
    unknown or any column differs from `expected`.

    A move checked and made by one statement: no lock-then-read, no loaded entity and no
    flush. The statement is built once per shape (the columns named). On a plain connection:
    a Session of the same transaction must not hold a copy of the job (it would not see the
    move)."""
    statement = _move_if(tuple(expected), tuple(values))
    params: dict[str, Any] = {"job_id": job_id}
    params.update((f"expected_{name}", value) for name, value in expected.items())
    params.update((f"value_{name}", value) for name, value in values.items())
    row = statement.execute(connection, params).one_or_none()
    return None if row is None else MovedJob(*row)


@lru_cache(maxsize=64)
def _move_if(expected: tuple[str, ...], values: tuple[str, ...]) -> DirectStatement:
    """The move's statement for one shape, run directly on the caller's connection
    (`DirectStatement`): every recorded outcome runs one."""
    c = _JOBS.c

    def holds(name: str) -> ColumnElement[bool]:
        column, value = c[name], bindparam(f"expected_{name}", type_=c[name].type)
        return column.is_not_distinct_from(value) if column.nullable else column == value

    return DirectStatement(
        update(_JOBS)
        .where(c.id == bindparam("job_id"), *(holds(name) for name in expected))
        .values({name: bindparam(f"value_{name}", type_=c[name].type) for name in values})
        .returning(
            c.account_id,
            c.action,
            c.created_at,
            _integration_version(),
            _webhooks_version(),
        )
    )


def add_job_logs(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """`JobRepository.add_logs` on a plain connection: a single row, a run's usual, as one
    direct execution (every `JobLog` column named) rather than an `executemany` of one."""
    if len(rows) == 1:
        _ADD_LOG.execute(connection, rows[0])
    elif rows:
        connection.execute(_ADD_LOGS, rows)

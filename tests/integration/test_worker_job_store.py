"""The worker's hot path in the job store, on every backend: an admitted batch moves to QUEUED
in one UPDATE that reads the jobs back (RETURNING), a claim is one UPDATE that reads the job
back plus its lease, and the written record's cache entry is one upsert.

These statements are backend-specific SQL (RETURNING with a subquery, ON CONFLICT), so they
run on SQLite and on PostgreSQL; flow control is a real redis-server.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker
from support.store import add_root_job, add_unthrottled_integration

from pmsq.crypto import CredentialCipher
from pmsq.errors import PmsError, PmsThrottled
from pmsq.models.base import new_id
from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.record import Record
from pmsq.models.sync import SyncExecution, SyncType
from pmsq.pms.connector import Exchange, StepResult
from pmsq.settings import Settings
from pmsq.workers.aggregator import finish_running_root
from pmsq.workers.connectors import ConnectorFactory
from pmsq.workers.dispatch import Dispatcher, FinishedRun
from pmsq.workers.flow.backend import Admission
from pmsq.workers.flow.keys import IntegrationKeys, claim_member
from pmsq.workers.flow.limits import MAX_TOLERANCE_US, Limits
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.publisher import AdmittedJob
from pmsq.workers.record_cache import store_written
from pmsq.workers.runner import JobRunner, Recorded, RedisClockEstimate
from pmsq.workers.steps import Failed, Outcome, Succeeded

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
#: The dispatcher's clock: when it moves admitted jobs to QUEUED.
T1 = datetime(2026, 3, 1, 9, 0, 5, tzinfo=UTC)
LEASE_S = 30.0


@dataclass
class RecordingPublisher:
    published: list[AdmittedJob] = field(default_factory=list)

    def publish(self, job: AdmittedJob) -> None:
        self.published.append(job)


@dataclass
class World:
    session_factory: sessionmaker[Session]
    redis: redis.Redis
    flow: RedisFlowControl
    dispatcher: Dispatcher
    runner: JobRunner
    publisher: RecordingPublisher
    settings: Settings
    connectors: ConnectorFactory
    account_id: str = ""
    integration_id: str = ""

    def add_integration(self) -> str:
        self.account_id, self.integration_id = add_unthrottled_integration(self.session_factory)
        return self.integration_id

    def add_job(self, status: JobStatus = JobStatus.PENDING) -> str:
        """A job row as it stands in the store, nothing in Redis."""
        return add_root_job(
            self.session_factory, self.account_id, self.integration_id, T0, status=status
        )

    def submit(self) -> str:
        job_id = self.add_job()
        assert self.dispatcher.submit(self.integration_id, [job_id]) == 1
        return job_id

    def job(self, job_id: str) -> Job:
        with self.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job


@pytest.fixture
def world(session_factory: sessionmaker[Session], redis_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    settings = Settings(database_url="unused://", job_lease_s=LEASE_S)
    flow = RedisFlowControl(client)
    publisher = RecordingPublisher()
    dispatcher = Dispatcher(session_factory, publisher, flow, settings, clock=lambda: T1)
    # The runner never builds a connector here: the tests record outcomes themselves.
    http = httpx.Client()
    connectors = ConnectorFactory(CredentialCipher(settings.fernet_keys), http)
    runner = JobRunner(session_factory, connectors, dispatcher, settings, clock=lambda: T0)
    world = World(
        session_factory, client, flow, dispatcher, runner, publisher, settings, connectors
    )
    world.add_integration()
    try:
        yield world
    finally:
        http.close()
        client.close()


@pytest.fixture
def statements(session_factory: sessionmaker[Session]) -> Iterator[list[str]]:
    """`VERB table` of each statement sent to the job store from now on (transaction control
    aside: PostgreSQL's driver begins transactions itself)."""
    with session_factory.begin() as session:
        engine = session.get_bind()
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The table a statement reads or writes, not one a subquery of it reads.
        while re.search(r"\([^()]*\)", statement):
            statement = re.sub(r"\([^()]*\)", "", statement)
        words = statement.split()
        marker = {"INSERT": "INTO", "UPDATE": "UPDATE", "SELECT": "FROM"}.get(words[0].upper())
        if marker is not None:
            upper = [word.upper() for word in words]
            sent.append(f"{words[0].upper()} {words[upper.index(marker) + 1]}")

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_an_admitted_batch_is_queued_in_one_statement(world: World, statements: list[str]) -> None:
    # Limits already in Redis (no read of them), and a burst of admissions allowed at once.
    world.flow.set_limits(world.integration_id, Limits(1, MAX_TOLERANCE_US, 100))
    done = world.add_job(JobStatus.SUCCESS)
    # Admitted in descending id order, which neither backend's RETURNING keeps by itself.
    waiting = sorted((world.add_job() for _ in range(3)), reverse=True)
    world.flow.enqueue(world.integration_id, [done])  # a stale backlog entry, admitted first
    statements.clear()

    assert world.dispatcher.submit(world.integration_id, waiting) == 3

    assert statements == ["UPDATE jobs"]
    assert world.publisher.published == [
        AdmittedJob(job_id, world.integration_id, "residents", "CREATE", job_id)
        for job_id in waiting
    ]
    for job_id in waiting:
        job = world.job(job_id)
        assert (job.status, job.updated_at, job.due_at) == (JobStatus.QUEUED.value, T1, None)
    job = world.job(done)
    assert (job.status, job.updated_at) == (JobStatus.SUCCESS.value, T0)
    usage = world.flow.usage(world.integration_id)
    assert (usage.in_flight, usage.backlog) == (3, 0)  # `done` gave its admission lease back


def test_a_claim_is_one_update_once_redis_clock_is_known(
    world: World, statements: list[str]
) -> None:
    first, second = world.submit(), world.submit()
    assert world.runner.claim(first) is not None  # reads the integration, hears Redis's clock
    statements.clear()

    claim = world.runner.claim(second)

    # The UPDATE stamps the lease Redis is about to grant; no second statement to stamp it.
    assert statements == ["UPDATE jobs"]
    assert claim is not None
    assert (claim.delivery, claim.attempt, claim.step.payload) == (1, 1, {"first_name": "Ada"})
    assert claim.step.accepted_at == T0
    assert claim.integration.id == world.integration_id
    job = world.job(second)
    assert (job.status, job.deliveries, job.unrecorded_claims) == (JobStatus.RUNNING.value, 1, 1)
    assert job.lease_expires_at is not None
    leases = IntegrationKeys(world.integration_id).leases
    score = world.redis.zscore(leases, claim_member(second, 1))
    assert score is not None
    slack_us = LEASE_S * RedisClockEstimate.LEASE_STAMP_SLACK * 1_000_000
    assert abs(score - round(job.lease_expires_at.timestamp() * 1_000_000)) <= slack_us


def test_a_duplicate_message_is_dropped_and_changes_nothing(world: World) -> None:
    job_id = world.submit()
    claim = world.runner.claim(job_id)
    assert claim is not None

    assert world.runner.claim(job_id) is None

    job = world.job(job_id)
    assert (job.status, job.deliveries, job.attempts) == (JobStatus.RUNNING.value, 1, 1)


def test_a_poison_message_fails_its_job_in_the_claims_own_transaction(
    world: World, statements: list[str]
) -> None:
    """The claim's UPDATE misses a job claimed too often without an outcome; the job is then
    failed, under its row lock, in the same transaction, and stays failed once it ends."""
    job_id = world.submit()
    max_deliveries = world.runner._settings.max_deliveries
    with world.session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.deliveries = job.unrecorded_claims = max_deliveries
    statements.clear()

    assert world.runner.claim(job_id) is None

    assert statements[:2] == ["UPDATE jobs", "SELECT jobs"]
    job = world.job(job_id)
    assert (job.status, job.deliveries, job.tree_failed) == (
        JobStatus.FAILURE.value,
        max_deliveries,
        1,
    )
    assert job.error is not None and "PMSQ_MAX_DELIVERIES" in job.error
    assert world.flow.usage(world.integration_id).in_flight == 0  # its admission given back


def test_a_claim_reads_a_changed_integration_in_its_own_transaction(
    world: World, statements: list[str]
) -> None:
    first, second = world.submit(), world.submit()
    assert world.runner.claim(first) is not None
    with world.session_factory.begin() as session:
        integration = session.get(Integration, world.integration_id)
        assert integration is not None
        integration.base_url = "https://pms.example/moved"
        integration.updated_at = T1
    statements.clear()

    claim = world.runner.claim(second)

    assert claim is not None and claim.integration.base_url == "https://pms.example/moved"
    assert statements == ["UPDATE jobs", "SELECT integrations"]
    assert world.job(second).status == JobStatus.RUNNING.value


def test_a_recorded_write_is_cached_in_one_statement(world: World, statements: list[str]) -> None:
    first, second = world.submit(), world.submit()
    exchanges = [Exchange("POST", f"https://pms.example/residents?n={n}") for n in range(2)]
    for job_id in (first, second):
        claim = world.runner.claim(job_id)
        assert claim is not None
        result = StepResult(created_record_id=job_id, record={"id": job_id, "first_name": "Ada"})
        statements.clear()

        recorded = world.runner.record(claim, exchanges, Succeeded(result, []))

        assert (recorded.status, recorded.applied) == (JobStatus.SUCCESS, True)
    # The second: one UPDATE fences and finishes the job; the account's webhook endpoints and
    # the integration's enum mappings are the runner's copies, whose versions that UPDATE read
    # back (no query of either).
    assert statements == ["INSERT job_logs", "UPDATE jobs", "INSERT records"]
    with world.session_factory() as session:
        cached = session.scalars(
            select(Record).where(Record.integration_id == world.integration_id)
        ).all()
    assert sorted((c.pms_id, c.data["first_name"]) for c in cached) == sorted(
        [(first, "Ada"), (second, "Ada")]
    )


@pytest.fixture
def transactions(session_factory: sessionmaker[Session]) -> Iterator[list[str]]:
    """One entry per transaction begun on the job store from now on, on either backend."""
    with session_factory.begin() as session:
        engine = session.get_bind()
    begun: list[str] = []

    def note(_conn: Any) -> None:
        begun.append("BEGIN")

    event.listen(engine, "begin", note)
    try:
        yield begun
    finally:
        event.remove(engine, "begin", note)


def test_a_record_queues_the_job_its_finish_admits_in_its_own_transaction(
    world: World, statements: list[str], transactions: list[str]
) -> None:
    world.flow.set_limits(world.integration_id, Limits(1, MAX_TOLERANCE_US, 1))  # one at once
    exchanges = [Exchange("POST", "https://pms.example/residents")]
    warm_up = world.runner.claim(world.submit())  # its record reads what a runner keeps
    assert warm_up is not None
    world.dispatcher.publish_finished(_finished(world.runner.record(warm_up, exchanges, _ok())))
    first, waiting = world.submit(), world.add_job()
    assert world.dispatcher.submit(world.integration_id, [waiting]) == 0  # no free slot
    claim = world.runner.claim(first)
    assert claim is not None
    statements.clear()
    transactions.clear()

    recorded = world.runner.record(claim, exchanges, _ok())

    # The outcome, then the job admitted into the freed slot moved to QUEUED, in one
    # transaction: published only once it committed.
    assert statements == ["INSERT job_logs", "UPDATE jobs", "UPDATE jobs"]
    assert transactions == ["BEGIN"]
    assert (world.job(first).status, world.job(waiting).status) == (
        JobStatus.SUCCESS.value,
        JobStatus.QUEUED.value,
    )
    assert waiting not in [message.job_id for message in world.publisher.published]
    statements.clear()
    transactions.clear()

    assert world.dispatcher.publish_finished(_finished(recorded)) == 1

    assert world.publisher.published[-1].job_id == waiting
    assert (statements, transactions) == ([], [])


def _ok() -> Outcome:
    return Succeeded(StepResult(), [])


def _finished(recorded: Recorded) -> FinishedRun:
    assert recorded.finished is not None
    return recorded.finished


def _add_sync(world: World, generation: int) -> None:
    with world.session_factory.begin() as session:
        session.add(
            SyncExecution(
                integration_id=world.integration_id,
                type=SyncType.SCHEDULED.value,
                generation=generation,
            )
        )


def _cached(world: World, pms_id: str) -> Record:
    with world.session_factory() as session:
        return session.scalars(
            select(Record).where(
                Record.integration_id == world.integration_id, Record.pms_id == pms_id
            )
        ).one()


def test_a_written_record_takes_the_newest_generation_and_never_an_older_one(
    world: World,
) -> None:
    with world.session_factory.begin() as session:
        store_written(session, world.integration_id, "residents", {"id": "r1", "v": 1}, T0)
    assert _cached(world, "r1").seen_generation is None  # no sync yet

    _add_sync(world, 2)
    _add_sync(world, 3)
    with world.session_factory.begin() as session:
        store_written(session, world.integration_id, "residents", {"id": "r1", "v": 2}, T0)
    cached = _cached(world, "r1")
    assert (cached.data, cached.seen_generation) == ({"id": "r1", "v": 2}, 3)

    # A newer sync saw it since; a write while only older generations exist keeps that one.
    with world.session_factory.begin() as session:
        record = session.get(Record, cached.id)
        assert record is not None
        record.seen_generation = 5
    later = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    with world.session_factory.begin() as session:
        store_written(session, world.integration_id, "residents", {"id": "r1", "v": 3}, later)
    cached = _cached(world, "r1")
    assert (cached.data, cached.seen_generation, cached.synced_at) == (
        {"id": "r1", "v": 3},
        5,
        later,
    )


def _unknown_outcome() -> PmsError:
    error = PmsError("timed out", retryable=True)
    error.outcome_unknown = True
    return error


@pytest.mark.parametrize(
    "outcome",
    [
        Succeeded(StepResult(created_record_id="r-1", record={"id": "r-1", "v": 1}), []),
        Failed(PmsError("last_name is required", retryable=False)),
        Failed(PmsError("down", retryable=True)),
        Failed(_unknown_outcome()),
        Failed(PmsThrottled("slow down", retryable=True)),
    ],
    ids=["success", "failure", "retry", "unknown-outcome", "throttled"],
)
def test_an_outcome_in_one_update_leaves_the_rows_the_locked_path_leaves(
    world: World, monkeypatch: pytest.MonkeyPatch, outcome: Outcome
) -> None:
    """The guarded UPDATE and the lock-and-apply path (what any other outcome takes) derive
    from the same rules; this holds them to the same rows and the same answer."""
    one_update, locked = world.submit(), world.submit()
    claims = [world.runner.claim(job_id) for job_id in (one_update, locked)]
    assert claims[0] is not None and claims[1] is not None
    exchanges = [Exchange("POST", "https://pms.example/residents")]
    # Recorded a second after the claims (as a run is), with the same jitter for a retry.
    later = T0 + timedelta(seconds=1)
    runner = JobRunner(
        world.session_factory, world.connectors, world.dispatcher, world.settings, lambda: later
    )
    # Flow control admits nothing here: the first record's retry, due well within a second
    # on Redis's clock, would otherwise be admitted (and QUEUED) by the second record's
    # finish on a slow machine. What is compared is the job store's rows.
    monkeypatch.setattr(world.dispatcher, "finish_run", lambda *_a, **_k: Admission("ok", None))
    random.seed(13)
    recorded = [runner.record(claims[0], exchanges, outcome)]
    monkeypatch.setattr(JobRunner, "_record_fast", lambda *_args: None)
    random.seed(13)
    recorded.append(runner.record(claims[1], exchanges, outcome))

    assert replace(recorded[0], finished=None) == replace(recorded[1], finished=None)
    assert recorded[0].applied
    rows = [_columns(world.job(job_id)) for job_id in (one_update, locked)]
    assert rows[0] == rows[1]
    assert rows[0]["unrecorded_claims"] == 0


def _columns(job: Job) -> dict[str, Any]:
    """The job's columns but those that name it."""
    own = {"id", "root_job_id", "idempotency_key"}
    return {c.key: getattr(job, c.key) for c in Job.__table__.columns if c.key not in own}


def test_a_child_job_is_never_finished_as_a_root(world: World) -> None:
    """`finish_running_root` counts on the job's own row: a child's must be refused, whatever
    its (unused) counters hold, or its root's counters would never move."""
    root = world.add_job(JobStatus.SUCCESS)
    child = new_id()
    with world.session_factory.begin() as session:
        session.add(
            Job(
                id=child,
                root_job_id=root,
                parent_job_id=root,
                account_id=world.account_id,
                integration_id=world.integration_id,
                model="residents",
                action="CREATE",
                status=JobStatus.RUNNING.value,
                created_at=T0,
                updated_at=T0,
                tree_total=1,
            )
        )
    with world.session_factory.begin() as session:
        finished = finish_running_root(
            session.connection(),
            session,
            child,
            JobStatus.SUCCESS,
            T0,
            expected={},
            also={},
            listeners=lambda _account_id, _version: (),
        )

    assert finished is None
    job = world.job(child)
    assert (job.status, job.tree_finished, job.finish_seq) == (JobStatus.RUNNING.value, 0, None)

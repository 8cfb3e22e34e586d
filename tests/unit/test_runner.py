"""JobRunner and Dispatcher against a real SQLite job store, flow control in fakeredis, a scripted
PMS and a fake broker.

Two clocks, both moved by hand: the job store's (`Clock`, frozen unless a test moves it, so due
times and leases are checked to the microsecond) and Redis's (`RedisClock`: the `TIME` every
flow-control script reads, real time plus whatever the test skipped). `Harness.advance` moves
both, so a retry's delay or a 429's pause passes without sleeping.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import fakeredis
import pytest
import redis
from fakeredis.commands_mixins import server_mixin
from sqlalchemy import Connection, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from support.metrics import CountingMetrics
from support.store import add_root_job

from pmsq.api.services.normalization import NormalizationService
from pmsq.errors import FencedOut, PmsError, PmsThrottled
from pmsq.metrics import MetricsRecorder
from pmsq.models.account import Account
from pmsq.models.base import new_id
from pmsq.models.enums import Cadence, JobStatus, Vendor, WriteStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job, JobLog
from pmsq.models.normalization import EnumMappingUpdate
from pmsq.models.record import Record
from pmsq.models.webhook import WebhookDelivery, WebhookEndpoint, WebhookEvent
from pmsq.pms.connector import Exchange, Step, StepResult
from pmsq.pms.profiles import VALIDATE_THEN_CREATE, VendorProfile
from pmsq.pms.registry import profile_for
from pmsq.settings import Settings
from pmsq.workers import dispatch as dispatch_module
from pmsq.workers import runner as runner_module
from pmsq.workers.connectors import IntegrationSnapshot
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.backend import Held, Pace, Paced
from pmsq.workers.flow.keys import IntegrationKeys, claim_member
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.healing import ORPHAN_AGE_S, Healer
from pmsq.workers.heartbeat import LeaseHeartbeat
from pmsq.workers.outcome import write_outcome
from pmsq.workers.pacing import PaceLatency, RequestPacer
from pmsq.workers.publisher import AdmittedJob
from pmsq.workers.runner import JobRunner, RedisClockEstimate
from pmsq.workers.steps import Claim, Outcome, Succeeded

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
#: Long enough that no real time elapsed in a test reaches a retry's due time by itself.
RETRY_BASE_S = 10.0
LEASE_S = 30.0
#: Generous limits, so neither request pacing nor admission spacing holds a test back
#: (a request slot every 11 us; admissions up to the concurrency).
REQUESTS_PER_SECOND = 100_000
CONCURRENCY = 100

Behaviour = StepResult | PmsError | Exception


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RedisClock:
    """Stands in for the `time` module of fakeredis's TIME command: real time, plus a skip."""

    def __init__(self) -> None:
        self.skipped_us = 0

    def time(self) -> float:
        return time.time() + self.skipped_us / 1_000_000

    def advance_us(self, microseconds: int) -> None:
        self.skipped_us += microseconds


@pytest.fixture
def redis_clock(monkeypatch: pytest.MonkeyPatch) -> RedisClock:
    clock = RedisClock()
    monkeypatch.setattr(server_mixin, "time", clock)
    # Fail loudly if fakeredis stops reading TIME through that module.
    client = fakeredis.FakeRedis()
    clock.advance_us(10**12)
    assert client.time()[0] >= int(time.time()) + 10**6 - 1
    clock.advance_us(-(10**12))
    return clock


class ScriptedConnector:
    """Plays one behaviour per call (the last one repeats), logging `exchanges_per_call`.

    Takes a request slot (`before_request`, as the HTTP connector does) before each exchange;
    `before` runs before the first of them and `during` after the last, while the job is
    still RUNNING.
    """

    def __init__(
        self,
        script: Sequence[Behaviour],
        exchanges_per_call: int = 1,
        during: Callable[[], None] | None = None,
        before: Callable[[], None] | None = None,
    ) -> None:
        self.script = list(script)
        self.exchanges_per_call = exchanges_per_call
        self.during = during
        self.before = before
        self.steps: list[Step] = []
        self.before_request: Callable[[], None] | None = None
        self.slots_taken = 0

    def execute(self, step: Step, log: Callable[[Exchange], None]) -> StepResult:
        self.steps.append(step)
        call = len(self.steps)
        if self.before is not None:
            self.before()
        for n in range(self.exchanges_per_call):
            assert self.before_request is not None, "built without a before_request hook"
            self.before_request()
            self.slots_taken += 1
            log(
                Exchange(
                    method="POST",
                    url=f"https://pms.example/{step.model}?call={call}&n={n}",
                    request_headers={"Authorization": "[REDACTED]"},
                    request_body='{"first_name": "Ada"}',
                    response_status=201,
                    response_body=f"response {call}.{n}",
                    duration_ms=12.5,
                )
            )
        if self.during is not None:
            self.during()
        behaviour = self.script[min(call, len(self.script)) - 1]
        if isinstance(behaviour, Exception):
            raise behaviour
        return behaviour


class FakeConnectorFactory:
    def __init__(self, connector: ScriptedConnector) -> None:
        self.connector = connector
        self.snapshots: list[IntegrationSnapshot] = []

    def build(
        self, snapshot: IntegrationSnapshot, before_request: Callable[[], None]
    ) -> tuple[ScriptedConnector, VendorProfile]:
        self.snapshots.append(snapshot)
        self.connector.before_request = before_request
        return self.connector, profile_for(snapshot.vendor)


@dataclass
class RecordingPublisher:
    published: list[AdmittedJob] = field(default_factory=list)

    def publish(self, job: AdmittedJob) -> None:
        self.published.append(job)


@dataclass
class Harness:
    session_factory: sessionmaker[Session]
    clock: Clock
    redis_clock: RedisClock
    redis: fakeredis.FakeRedis
    publisher: RecordingPublisher
    settings: Settings
    integration_id: str = ""
    account_id: str = ""
    vendor: Vendor = Vendor.SANDBOX
    #: This host's monotonic clock as the runner sees it: it only moves by `advance` (a
    #: freeze), so a pacing pass is never stale by chance of a slow test machine.
    monotonic_s: float = 0.0

    def __post_init__(self) -> None:
        self.flow = RedisFlowControl(self.redis)
        self.dispatcher = Dispatcher(
            self.session_factory, self.publisher, self.flow, self.settings, self.clock
        )
        self.healer = Healer(self.session_factory, self.dispatcher, self.settings, self.clock)

    @property
    def keys(self) -> IntegrationKeys:
        return IntegrationKeys(self.integration_id)

    def runner(
        self, connector: ScriptedConnector, metrics: MetricsRecorder | None = None
    ) -> JobRunner:
        return JobRunner(
            self.session_factory,
            FakeConnectorFactory(connector),  # type: ignore[arg-type]
            self.dispatcher,
            self.settings,
            self.clock,
            metrics=metrics,
            monotonic=self.monotonic,
        )

    def monotonic(self) -> float:
        return self.monotonic_s

    def add_integration(self, vendor: Vendor) -> None:
        with self.session_factory.begin() as session:
            account = Account(name=f"acme-{vendor.value}")
            session.add(account)
            session.flush()
            integration = Integration(
                account_id=account.id,
                name="acme pms",
                integration_vendor=vendor.value,
                max_request_frequency=REQUESTS_PER_SECOND,
                max_request_cadence=Cadence.SECOND.value,
                max_job_concurrency=CONCURRENCY,
            )
            session.add(integration)
            session.flush()
            self.account_id, self.integration_id = account.id, integration.id
        self.vendor = vendor

    def submit(self, model: str = "residents", action: str = "CREATE", **payload: Any) -> str:
        """Store a root job and submit it, as the API does; returns its id."""
        job_id = self.store(model, action, **payload)
        assert self.dispatcher.submit(self.integration_id, [job_id]) == 1
        return job_id

    def store(self, model: str = "residents", action: str = "CREATE", **payload: Any) -> str:
        """Store a PENDING root job, nothing in Redis yet; returns its id."""
        return add_root_job(
            self.session_factory,
            self.account_id,
            self.integration_id,
            self.clock.now,
            payload=payload or None,
            model=model,
            action=action,
        )

    def one_at_a_time(self) -> None:
        """The integration runs one job at a time (before its limits reach Redis)."""
        with self.session_factory.begin() as session:
            integration = session.get(Integration, self.integration_id)
            assert integration is not None
            integration.max_job_concurrency = 1

    def admit(self) -> int:
        """One admission of the integration, as a dispatcher tick or a finishing job does."""
        return self.dispatcher.admit_integration(self.integration_id)

    def advance(self, seconds: float) -> None:
        """Every clock moves on by `seconds`: this host's, its monotonic one and Redis's."""
        self.clock.advance(seconds)
        self.monotonic_s += seconds
        self.redis_clock.advance_us(round(seconds * 1_000_000))

    def redis_now_us(self) -> int:
        seconds, micros = self.redis.time()
        return seconds * 1_000_000 + micros

    def backlog_due_us(self, job_id: str) -> int | None:
        score = self.redis.zscore(self.keys.backlog, job_id)
        return None if score is None else int(score)

    def lease_us(self, member: str) -> int | None:
        """The lease of a leases member: a job id (admitted) or `claim_member` (claimed)."""
        score = self.redis.zscore(self.keys.leases, member)
        return None if score is None else int(score)

    def paused_until_us(self) -> int | None:
        return self.flow.usage(self.integration_id).paused_until_us

    def job(self, job_id: str) -> Job:
        with self.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def logs(self, job_id: str) -> list[JobLog]:
        with self.session_factory() as session:
            stmt = select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.url)
            return list(session.scalars(stmt).all())

    def outcome(self, root_id: str) -> Any:
        with self.session_factory() as session:
            root = session.get(Job, root_id)
            assert root is not None
            return write_outcome(session, root)

    def readmit_when_due(self, job_id: str) -> None:
        """Move both clocks to when the job may start (its due time, the end of a pause) and
        admit it again."""
        due_at = self.job(job_id).due_at
        assert due_at is not None
        redis_now = self.redis_now_us()
        due_us = self.backlog_due_us(job_id)
        assert due_us is not None, "a deferred job waits in its backlog"
        wait_us = max(
            round((due_at - self.clock.now).total_seconds() * 1_000_000),
            due_us - redis_now,
            (self.paused_until_us() or 0) - redis_now,
            0,
        )
        self.advance(wait_us / 1_000_000)
        assert self.admit() == 1
        assert self.publisher.published[-1].job_id == job_id


class HarnessFactory(Protocol):
    def __call__(self, vendor: Vendor = Vendor.SANDBOX, **overrides: Any) -> Harness: ...


@pytest.fixture
def make_harness(session_factory: sessionmaker[Session], redis_clock: RedisClock) -> HarnessFactory:
    def make(vendor: Vendor = Vendor.SANDBOX, **overrides: Any) -> Harness:
        options: dict[str, Any] = {
            "max_attempts": 3,
            "retry_base_s": RETRY_BASE_S,
            "retry_max_s": 60.0,
            "max_deliveries": 5,
            "job_lease_s": LEASE_S,
            **overrides,
        }
        url = str(session_factory.kw["bind"].url)
        harness = Harness(
            session_factory,
            Clock(T0),
            redis_clock,
            fakeredis.FakeRedis(),
            RecordingPublisher(),
            Settings(database_url=url, **options),
        )
        harness.add_integration(vendor)
        return harness

    return make


@pytest.fixture
def harness(make_harness: HarnessFactory) -> Harness:
    return make_harness()


# --- success -----------------------------------------------------------------------------------


def test_success_is_recorded_with_one_log_per_exchange(harness: Harness) -> None:
    job_id = harness.submit(first_name="Ada", last_name="Lovelace")
    assert harness.publisher.published == [
        AdmittedJob(job_id, harness.integration_id, "residents", "CREATE", job_id)
    ]
    assert harness.lease_us(job_id) is not None  # admission took a concurrency slot
    connector = ScriptedConnector([StepResult(created_record_id="res-1")], exchanges_per_call=2)

    assert harness.runner(connector).run(job_id) == JobStatus.SUCCESS

    job = harness.job(job_id)
    assert job.status == JobStatus.SUCCESS.value
    assert (job.attempts, job.deliveries, job.unrecorded_claims) == (1, 1, 0)
    assert job.created_record_id == "res-1"
    assert job.started_at == job.finished_at == T0
    assert job.lease_expires_at is None
    [sent] = connector.steps
    assert sent.payload == {"first_name": "Ada", "last_name": "Lovelace"}
    assert sent.idempotency_key == job.idempotency_key
    assert sent.outcome_unknown is False
    logs = harness.logs(job_id)
    assert [(log.attempt, log.method, log.response_body) for log in logs] == [
        (1, "POST", "response 1.0"),
        (1, "POST", "response 1.1"),
    ]
    assert logs[0].request_headers == {"Authorization": "[REDACTED]"}
    assert harness.outcome(job_id) == type(harness.outcome(job_id))(
        WriteStatus.SUCCESS, [], "res-1"
    )
    # Each request took a paced slot; the finished job gave its concurrency slot back.
    assert connector.slots_taken == 2
    assert harness.redis.exists(harness.keys.request_tat)
    assert harness.lease_us(job_id) is None
    assert harness.flow.usage(harness.integration_id).in_flight == 0


# --- retryable errors --------------------------------------------------------------------------


def test_retryable_error_defers_with_backoff_then_gives_up_after_max_attempts(
    harness: Harness,
) -> None:
    job_id = harness.submit()
    connector = ScriptedConnector([PmsError("PMS answered 503", retryable=True, status_code=503)])
    runner = harness.runner(connector)

    for attempt in (1, 2):
        redis_before = harness.redis_now_us()
        assert runner.run(job_id) == JobStatus.PENDING
        redis_after = harness.redis_now_us()
        job = harness.job(job_id)
        assert job.attempts == attempt
        assert job.error == "PMS answered 503"
        assert job.lease_expires_at is None
        assert job.due_at is not None
        step_s = RETRY_BASE_S * 2 ** (attempt - 1)
        delay = job.due_at - harness.clock.now
        assert timedelta(seconds=step_s / 2) <= delay <= timedelta(seconds=step_s)
        assert harness.outcome(job_id).write_status == WriteStatus.PENDING
        # Back in the backlog, due after the same delay on Redis's clock; its slot is free.
        delay_us = round(delay.total_seconds() * 1_000_000)
        due_us = harness.backlog_due_us(job_id)
        assert due_us is not None
        assert redis_before + delay_us - 1 <= due_us <= redis_after + delay_us + 1
        assert harness.lease_us(job_id) is None
        # Not admitted again before its due time.
        assert harness.admit() == 0
        harness.readmit_when_due(job_id)

    assert runner.run(job_id) == JobStatus.FAILURE
    job = harness.job(job_id)
    assert job.attempts == 3
    assert job.error is not None
    assert "PMS answered 503" in job.error
    assert "gave up after 3 attempts" in job.error
    assert len(connector.steps) == 3
    assert [log.attempt for log in harness.logs(job_id)] == [1, 2, 3]
    outcome = harness.outcome(job_id)
    assert outcome.write_status == WriteStatus.FAILURE
    assert outcome.errors == [job.error]
    assert harness.backlog_due_us(job_id) is None
    assert harness.lease_us(job_id) is None


def test_an_unknown_outcome_is_retried_no_sooner_than_the_pms_timeout(
    make_harness: HarnessFactory,
) -> None:
    """Found in review: a re-attempt a second after a timed-out POST could read back before a
    slow PMS applied the first attempt, and then create the record a second time."""
    harness = make_harness(Vendor.APPFOLIO, retry_base_s=0.1, pms_timeout_s=10.0)
    job_id = harness.submit()
    lost = PmsError("PMS request timed out (ReadTimeout)", retryable=True)
    lost.outcome_unknown = True
    runner = harness.runner(ScriptedConnector([lost]))

    assert runner.run(job_id) == JobStatus.PENDING

    job = harness.job(job_id)
    assert job.outcome_unknown
    assert job.due_at is not None
    assert job.due_at - harness.clock.now >= timedelta(seconds=10)


def test_retry_that_succeeds_leaves_no_error_on_the_write(harness: Harness) -> None:
    job_id = harness.submit()
    connector = ScriptedConnector(
        [PmsError("timeout", retryable=True), StepResult(created_record_id="res-2")]
    )
    runner = harness.runner(connector)

    assert runner.run(job_id) == JobStatus.PENDING
    harness.readmit_when_due(job_id)
    assert runner.run(job_id) == JobStatus.SUCCESS

    job = harness.job(job_id)
    assert (job.attempts, job.error) == (2, None)
    assert harness.outcome(job_id).errors == []
    assert len(harness.logs(job_id)) == 2  # the failed attempt stays in the job log


def test_an_error_whose_outcome_is_unknown_marks_the_next_attempt(harness: Harness) -> None:
    job_id = harness.submit()
    timeout = PmsError("read timeout", retryable=True)
    timeout.outcome_unknown = True
    connector = ScriptedConnector([timeout, StepResult(created_record_id="res-3")])
    runner = harness.runner(connector)

    runner.run(job_id)
    assert harness.job(job_id).outcome_unknown is True
    harness.readmit_when_due(job_id)
    runner.run(job_id)

    assert [step.outcome_unknown for step in connector.steps] == [False, True]
    assert connector.steps[0].idempotency_key == connector.steps[1].idempotency_key


def test_a_write_given_up_with_an_unknown_outcome_stays_unknown(harness: Harness) -> None:
    """A retry-write copies the flag: the copy must read back what the last attempt applied."""
    job_id = harness.submit()
    lost = PmsError("PMS answered 502", retryable=True, status_code=502)
    lost.outcome_unknown = True
    known = PmsError("PMS answered 503", retryable=True, status_code=503)
    connector = ScriptedConnector([known, known, lost])
    runner = harness.runner(connector)

    for _ in range(2):
        assert runner.run(job_id) == JobStatus.PENDING
        harness.readmit_when_due(job_id)
    assert harness.job(job_id).outcome_unknown is False
    assert runner.run(job_id) == JobStatus.FAILURE

    job = harness.job(job_id)
    assert job.outcome_unknown is True
    assert {step.accepted_at for step in connector.steps} == {job.created_at}


# --- non-retryable errors ----------------------------------------------------------------------


def test_non_retryable_error_fails_at_once_with_the_pms_message(harness: Harness) -> None:
    job_id = harness.submit()
    connector = ScriptedConnector(
        [PmsError("unit_id: no such unit", retryable=False, status_code=422)]
    )

    assert harness.runner(connector).run(job_id) == JobStatus.FAILURE

    job = harness.job(job_id)
    assert (job.attempts, job.error) == (1, "unit_id: no such unit")
    assert harness.outcome(job_id).errors == ["unit_id: no such unit"]
    assert harness.lease_us(job_id) is None
    assert harness.backlog_due_us(job_id) is None


def test_an_unexpected_exception_fails_the_job_instead_of_looping(harness: Harness) -> None:
    job_id = harness.submit()
    connector = ScriptedConnector([KeyError("surprise")])

    assert harness.runner(connector).run(job_id) == JobStatus.FAILURE
    assert harness.job(job_id).error == "internal error: KeyError"
    assert harness.lease_us(job_id) is None


# --- throttling --------------------------------------------------------------------------------


def test_throttled_job_waits_for_retry_after_without_burning_an_attempt(
    harness: Harness,
) -> None:
    job_id = harness.submit()
    connector = ScriptedConnector(
        [
            PmsThrottled(
                "429 Too Many Requests", retryable=True, status_code=429, retry_after_s=7.5
            ),
            StepResult(created_record_id="res-4"),
        ]
    )
    runner = harness.runner(connector)

    redis_before = harness.redis_now_us()
    assert runner.run(job_id) == JobStatus.PENDING
    redis_after = harness.redis_now_us()
    job = harness.job(job_id)
    assert job.attempts == 0
    assert job.unrecorded_claims == 0
    # The integration, not the job, waits: paused until Retry-After on Redis's clock, the job
    # back in its backlog (due at once) and its slot free.
    paused_until = harness.paused_until_us()
    assert paused_until is not None
    assert redis_before + 7_500_000 <= paused_until <= redis_after + 7_500_000
    assert job.due_at == T0
    assert harness.flow.in_backlog(harness.integration_id, [job_id]) == [True]
    assert harness.lease_us(job_id) is None
    assert harness.publisher.published[-1:] == [
        AdmittedJob(job_id, harness.integration_id, "residents", "CREATE", job_id)
    ]  # only its first admission so far

    harness.advance(7.0)
    assert harness.admit() == 0
    harness.advance(0.5)
    assert harness.admit() == 1

    assert runner.run(job_id) == JobStatus.SUCCESS
    assert harness.job(job_id).attempts == 1


def test_a_throttle_pauses_every_request_of_the_integration(harness: Harness) -> None:
    job_id = harness.submit()
    throttled = PmsThrottled("429", retryable=True, status_code=429, retry_after_s=60.0)
    harness.runner(ScriptedConnector([throttled])).run(job_id)

    # A job already running takes no request slot until the pause ends (the pacer would wait).
    assert harness.flow.hold(harness.integration_id, "running", 1, LEASE_S).held
    reserved, wait_s, _ = harness.flow.pace(harness.integration_id, "running", 1)
    assert reserved is Pace.WAIT
    assert 59.0 < wait_s <= 60.0


def test_a_throttle_pauses_the_integration_before_its_outcome_is_recorded(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The integration's other jobs pace meanwhile: a pause that waits for the record lets
    # their requests reach the PMS inside its Retry-After.
    job_id = harness.submit()
    throttled = PmsThrottled("429", retryable=True, status_code=429, retry_after_s=60.0)
    runner = harness.runner(ScriptedConnector([throttled]))
    paused_when_recorded: list[int | None] = []
    record = runner.record

    def record_noting_the_pause(*args: Any) -> Any:
        paused_when_recorded.append(harness.paused_until_us())
        return record(*args)

    monkeypatch.setattr(runner, "record", record_noting_the_pause)
    redis_before = harness.redis_now_us()
    assert runner.run(job_id) == JobStatus.PENDING

    [paused_until] = paused_when_recorded
    assert paused_until is not None and paused_until >= redis_before + 60_000_000
    assert harness.paused_until_us() == paused_until  # paused once, not again after


def test_throttles_do_not_count_towards_max_attempts(harness: Harness) -> None:
    job_id = harness.submit()
    throttled = PmsThrottled("429", retryable=True, status_code=429, retry_after_s=1.0)
    connector = ScriptedConnector([throttled] * 4 + [StepResult(created_record_id="res-5")])
    runner = harness.runner(connector)

    for _ in range(4):  # more throttles than max_attempts (3)
        assert runner.run(job_id) == JobStatus.PENDING
        harness.readmit_when_due(job_id)
    assert runner.run(job_id) == JobStatus.SUCCESS
    assert harness.job(job_id).attempts == 1


def test_many_throttles_do_not_make_a_job_poison(make_harness: HarnessFactory) -> None:
    harness = make_harness(max_deliveries=2)
    job_id = harness.submit()
    throttled = PmsThrottled("429", retryable=True, status_code=429, retry_after_s=1.0)
    connector = ScriptedConnector([throttled] * 2 + [StepResult(created_record_id="res-6")])
    runner = harness.runner(connector)

    for _ in range(2):
        assert runner.run(job_id) == JobStatus.PENDING
        assert harness.job(job_id).unrecorded_claims == 0
        harness.readmit_when_due(job_id)
    assert runner.run(job_id) == JobStatus.SUCCESS
    assert harness.job(job_id).deliveries == 3


def test_a_pms_that_throttles_forever_fails_the_job_after_max_throttled_s(
    make_harness: HarnessFactory,
) -> None:
    harness = make_harness(max_throttled_s=100.0)
    job_id = harness.submit()
    throttled = PmsThrottled("429", retryable=True, status_code=429, retry_after_s=60.0)
    runner = harness.runner(ScriptedConnector([throttled]))

    for _ in range(2):  # 0 s and 60 s after the write was accepted: it waits
        assert runner.run(job_id) == JobStatus.PENDING
        harness.readmit_when_due(job_id)
    assert runner.run(job_id) == JobStatus.FAILURE  # 120 s: past the bound

    job = harness.job(job_id)
    assert job.error is not None
    assert "still throttled 120 s" in job.error
    assert "PMSQ_MAX_THROTTLED_S" in job.error
    assert harness.outcome(job_id).write_status == WriteStatus.FAILURE


def test_a_redis_blip_while_pacing_is_retried_not_failed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = harness.submit()
    connector = ScriptedConnector([StepResult(created_record_id="res-blip")])
    runner = harness.runner(connector)

    def redis_is_down(*args: object) -> tuple[Pace, float]:
        raise redis.exceptions.ConnectionError("Connection refused")

    hold = harness.flow.hold

    def hold_without_a_slot(*args: Any, **kwargs: Any) -> Held:
        # The request's slot was not free at claim: the pacer must ask for it.
        return replace(hold(*args, **kwargs), slot=None)

    with monkeypatch.context() as patch:
        patch.setattr(harness.flow, "hold", hold_without_a_slot)
        patch.setattr(harness.flow, "pace", redis_is_down)
        assert runner.run(job_id) == JobStatus.PENDING

    job = harness.job(job_id)
    assert job.error == "flow control unavailable while pacing (ConnectionError)"
    assert (job.attempts, job.outcome_unknown) == (1, False)  # nothing was sent
    assert connector.slots_taken == 0
    harness.readmit_when_due(job_id)
    assert runner.run(job_id) == JobStatus.SUCCESS


# --- duplicates and poison messages ------------------------------------------------------------


def test_duplicate_message_is_dropped(harness: Harness) -> None:
    job_id = harness.submit()
    connector = ScriptedConnector([StepResult(created_record_id="res-7")])
    runner = harness.runner(connector)
    assert runner.run(job_id) == JobStatus.SUCCESS
    finished = harness.job(job_id)

    assert runner.run(job_id) is None  # the broker delivered the message again

    assert len(connector.steps) == 1
    again = harness.job(job_id)
    assert (again.status, again.deliveries, again.updated_at) == (
        finished.status,
        finished.deliveries,
        finished.updated_at,
    )


def test_message_for_an_unknown_job_is_dropped(harness: Harness) -> None:
    connector = ScriptedConnector([StepResult()])
    assert harness.runner(connector).run("no-such-job") is None
    assert connector.steps == []


def test_queued_job_claimed_max_deliveries_times_unrecorded_fails_as_poison(
    harness: Harness,
) -> None:
    job_id = harness.submit()
    with harness.session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.deliveries = job.unrecorded_claims = harness.settings.max_deliveries
    connector = ScriptedConnector([StepResult()])
    metrics = CountingMetrics()

    assert harness.runner(connector, metrics).run(job_id) is None

    assert connector.steps == []
    assert metrics.total("pmsq_poison_jobs", integration_id=harness.integration_id) == 1
    job = harness.job(job_id)
    assert job.status == JobStatus.FAILURE.value
    assert job.error is not None
    assert f"delivered {harness.settings.max_deliveries} times" in job.error
    assert "PMSQ_MAX_DELIVERIES" in job.error
    assert harness.outcome(job_id).write_status == WriteStatus.FAILURE
    assert harness.lease_us(job_id) is None  # the poisoned job's slot is given back


def test_many_recorded_deliveries_alone_do_not_make_a_job_poison(harness: Harness) -> None:
    # `deliveries` is only the fencing token; poison counts claims that never recorded.
    job_id = harness.submit()
    with harness.session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.deliveries = harness.settings.max_deliveries + 3
    connector = ScriptedConnector([StepResult(created_record_id="res-8")])

    assert harness.runner(connector).run(job_id) == JobStatus.SUCCESS
    assert harness.job(job_id).deliveries == harness.settings.max_deliveries + 4


def test_job_whose_worker_is_lost_every_time_fails_as_poison(
    make_harness: HarnessFactory,
) -> None:
    harness = make_harness(max_deliveries=3)
    job_id = harness.submit()
    runner = harness.runner(ScriptedConnector([StepResult()]))

    for delivery in (1, 2, 3):
        assert runner.claim(job_id) is not None  # the worker dies after its claim
        assert harness.job(job_id).unrecorded_claims == delivery
        harness.advance(LEASE_S + 1)
        reclaimed = harness.healer.reclaim_expired_leases()
        if delivery < 3:
            assert reclaimed == 1
            # Back through admission at once: published again.
            assert harness.publisher.published[-1].job_id == job_id
            assert len(harness.publisher.published) == delivery + 1
            assert harness.job(job_id).status == JobStatus.QUEUED.value

    assert reclaimed == 0
    assert len(harness.publisher.published) == 3
    job = harness.job(job_id)
    assert job.status == JobStatus.FAILURE.value
    assert job.deliveries == 3
    assert job.error is not None
    assert "delivered 3 times" in job.error


# --- fencing -----------------------------------------------------------------------------------


def test_outcome_of_a_worker_that_lost_its_lease_is_dropped(harness: Harness) -> None:
    job_id = harness.submit()
    slow = harness.runner(ScriptedConnector([StepResult(created_record_id="stale")]))
    stale_claim = slow.claim(job_id)
    assert stale_claim is not None and stale_claim.delivery == 1

    # The slow worker's lease passes; the job is handed out again and claimed anew.
    harness.advance(LEASE_S + 1)
    assert harness.healer.reclaim_expired_leases() == 1
    assert harness.publisher.published[-1].job_id == job_id
    fresh = harness.runner(ScriptedConnector([StepResult(created_record_id="fresh")]))
    fresh_claim = fresh.claim(job_id)
    assert fresh_claim is not None and fresh_claim.delivery == 2
    assert fresh_claim.step.outcome_unknown is True

    # The slow worker comes back and tries to record its (now stale) success.
    stale_exchanges = [Exchange("POST", "https://pms.example/residents?stale")]
    recorded = slow.record(
        stale_claim, stale_exchanges, Succeeded(StepResult(created_record_id="stale"), [])
    )
    assert (recorded.status, recorded.applied, recorded.spawned) == (None, False, [])
    job = harness.job(job_id)
    assert job.status == JobStatus.RUNNING.value
    assert job.created_record_id is None
    assert job.deliveries == 2

    recorded = fresh.record(fresh_claim, [], Succeeded(StepResult(created_record_id="fresh"), []))
    assert (recorded.status, recorded.applied) == (JobStatus.SUCCESS, True)
    assert harness.outcome(job_id).created_record_id == "fresh"
    # The stale request did reach the PMS, so the job log keeps it.
    assert [log.url for log in harness.logs(job_id)] == ["https://pms.example/residents?stale"]


def test_a_fenced_out_worker_leaves_the_newer_deliverys_lease_alone(harness: Harness) -> None:
    job_id = harness.submit()
    fresh_claims = []

    def lose_the_lease_meanwhile() -> None:
        # While the slow worker's request is in flight its lease passes; the job is admitted
        # again (a new concurrency lease) and claimed by another worker.
        harness.advance(LEASE_S + 1)
        assert harness.healer.reclaim_expired_leases() == 1
        fresh_claims.append(harness.runner(ScriptedConnector([StepResult()])).claim(job_id))

    slow = harness.runner(
        ScriptedConnector(
            [PmsError("PMS answered 503", retryable=True, status_code=503)],
            during=lose_the_lease_meanwhile,
        )
    )
    assert slow.run(job_id) is None  # its outcome is dropped

    [fresh_claim] = fresh_claims
    assert fresh_claim is not None and fresh_claim.delivery == 2
    job = harness.job(job_id)
    assert (job.status, job.deliveries) == (JobStatus.RUNNING.value, 2)
    lease = harness.lease_us(claim_member(job_id, 2))
    assert lease is not None and lease > harness.redis_now_us()
    assert harness.backlog_due_us(job_id) is None  # not deferred by the stale outcome


def test_a_worker_paused_past_its_lease_stops_without_sending(harness: Harness) -> None:
    job_id = harness.submit()
    fresh_claims = []

    def freeze_past_the_lease() -> None:
        # The worker is frozen (SIGSTOP, a long GC) after its claim and before its request;
        # meanwhile its lease lapses and the job is handed to another worker.
        harness.advance(LEASE_S + 1)
        assert harness.healer.reclaim_expired_leases() == 1
        fresh_claims.append(harness.runner(ScriptedConnector([StepResult()])).claim(job_id))

    stale = ScriptedConnector([StepResult(created_record_id="stale")], before=freeze_past_the_lease)
    assert harness.runner(stale).run(job_id) is None

    assert stale.slots_taken == 0  # no request left
    assert harness.logs(job_id) == []
    [fresh] = fresh_claims
    assert fresh is not None and fresh.delivery == 2
    job = harness.job(job_id)
    assert (job.status, job.deliveries, job.created_record_id) == (JobStatus.RUNNING.value, 2, None)
    # Nothing released: the newer claim keeps its slot, the stale one holds none.
    assert harness.lease_us(claim_member(job_id, 2)) is not None
    assert harness.lease_us(claim_member(job_id, 1)) is None
    assert harness.flow.usage(harness.integration_id).in_flight == 1


def test_a_lapsed_lease_stops_the_worker_even_before_a_reclaim(harness: Harness) -> None:
    job_id = harness.submit()

    def freeze_past_the_lease() -> None:
        harness.advance(LEASE_S + 1)  # nobody has reclaimed the job yet

    stale = ScriptedConnector([StepResult()], before=freeze_past_the_lease)
    assert harness.runner(stale).run(job_id) is None

    assert stale.slots_taken == 0
    job = harness.job(job_id)
    assert (job.status, job.deliveries) == (JobStatus.RUNNING.value, 1)
    # The lease reclaim hands it out again at once, as for a dead worker.
    assert harness.healer.reclaim_expired_leases() == 1
    assert harness.publisher.published[-1].job_id == job_id


def test_a_failed_renewal_stops_the_job(harness: Harness) -> None:
    job_id = harness.submit()
    runner = harness.runner(ScriptedConnector([StepResult()]))
    claim = runner.claim(job_id)
    assert claim is not None
    heartbeat = LeaseHeartbeat(
        flow=harness.flow,
        session_factory=harness.session_factory,
        integration_id=harness.integration_id,
        job_id=job_id,
        delivery=claim.delivery,
        lease_s=LEASE_S,
    )

    redis_before = harness.redis_now_us()
    heartbeat.beat()
    assert not heartbeat.lost.is_set()
    renewed = harness.job(job_id).lease_expires_at
    assert renewed is not None
    assert renewed.timestamp() * 1_000_000 >= redis_before + LEASE_S * 1_000_000 - 1

    harness.advance(LEASE_S + 1)  # a pause longer than the lease: the renewal comes too late
    heartbeat.beat()
    assert heartbeat.lost.is_set()
    # Its pacer then refuses every request, even with a lease taken again by someone.
    pacer = RequestPacer(harness.flow, claim, harness.dispatcher.load_limits, heartbeat.lost)
    with pytest.raises(FencedOut):
        pacer.wait_for_slot()


def test_a_renewal_of_a_job_reclaimed_in_the_store_stops_it(harness: Harness) -> None:
    job_id = harness.submit()
    runner = harness.runner(ScriptedConnector([StepResult()]))
    claim = runner.claim(job_id)
    assert claim is not None
    heartbeat = LeaseHeartbeat(
        flow=harness.flow,
        session_factory=harness.session_factory,
        integration_id=harness.integration_id,
        job_id=job_id,
        delivery=claim.delivery,
        lease_s=LEASE_S,
    )
    with harness.session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.deliveries += 1  # another worker claimed it meanwhile

    heartbeat.beat()

    assert heartbeat.lost.is_set()


def test_a_process_renews_the_leases_of_all_its_jobs_from_one_thread(harness: Harness) -> None:
    threads_before = set(threading.enumerate())
    seen: set[threading.Thread] = set()

    def note_threads() -> None:
        seen.update(set(threading.enumerate()) - threads_before)

    runner = harness.runner(ScriptedConnector([StepResult()], during=note_threads))
    for _ in range(3):
        assert runner.run(harness.submit()) == JobStatus.SUCCESS

    # The process's renewal thread, started by the first job; no job starts one of its own.
    assert [thread.name for thread in seen] == ["lease-renewer"]


def test_a_job_that_outlives_a_third_of_its_lease_has_it_renewed(
    make_harness: HarnessFactory,
) -> None:
    lease_s = 3.0
    harness = make_harness(job_lease_s=lease_s)
    job_id = harness.submit()
    member = claim_member(job_id, 1)
    renewed: list[int] = []

    def wait_for_a_renewal() -> None:
        claimed_us = harness.lease_us(member)
        assert claimed_us is not None
        deadline_s = time.monotonic() + 10 * lease_s
        while time.monotonic() < deadline_s:
            lease_us = harness.lease_us(member)
            stored = harness.job(job_id).lease_expires_at
            stored_us = None if stored is None else round(stored.timestamp() * 1_000_000)
            if lease_us is not None and lease_us > claimed_us and stored_us == lease_us:
                renewed.append(lease_us)
                return
            time.sleep(0.05)  # polling, with a deadline

    connector = ScriptedConnector([StepResult()], during=wait_for_a_renewal)
    assert harness.runner(connector).run(job_id) == JobStatus.SUCCESS

    # Renewed in Redis and in the job store alike, and the job was not fenced out.
    assert len(renewed) == 1
    assert harness.job(job_id).status == JobStatus.SUCCESS.value


class RoundTrips:
    """A monotonic clock for the pacer: each pacing pass takes the next round trip given."""

    def __init__(self, round_trips_s: Sequence[float]) -> None:
        self.round_trips_s = list(round_trips_s)
        self.now_s = 0.0
        self.asking = False

    def __call__(self) -> float:
        if self.asking:
            self.now_s += self.round_trips_s.pop(0) if self.round_trips_s else 0.0
        self.asking = not self.asking
        return self.now_s


def paced_passes(harness: Harness, claim: Claim, round_trips_s: Sequence[float]) -> list[Pace]:
    """The decisions a pacer got for one request, the fastest round trip seen being 1 ms."""
    passes: list[Pace] = []

    class Recording(RedisFlowControl):
        def pace(self, integration_id: str, job_id: str, delivery: int) -> Paced:
            paced = super().pace(integration_id, job_id, delivery)
            passes.append(paced.decision)
            return paced

    latency = PaceLatency()
    latency.observe(0.001)
    pacer = RequestPacer(
        Recording(harness.redis),
        claim,
        harness.dispatcher.load_limits,
        stale_after_s=0.010,
        monotonic=RoundTrips(round_trips_s),
        latency=latency,
    )
    pacer.wait_for_slot()
    return passes


@pytest.fixture
def slow_claim(make_harness: HarnessFactory) -> tuple[Harness, Claim]:
    """A claimed job of an integration allowed one request a second."""
    harness = make_harness()
    with harness.session_factory.begin() as session:
        integration = session.get(Integration, harness.integration_id)
        assert integration is not None
        integration.max_request_frequency = 1
    job_id = harness.submit()
    claim = harness.runner(ScriptedConnector([StepResult()])).claim(job_id)
    assert claim is not None and claim.first_slot is not None
    harness.dispatcher.load_limits(harness.integration_id)
    # The passes of a later request: the slot the claim took is given back, unused.
    assert harness.flow.give_back(harness.integration_id, claim.first_slot.slot)
    return harness, replace(claim, first_slot=None)


@pytest.fixture
def slow_harness(make_harness: HarnessFactory) -> Harness:
    """A harness whose integration is allowed one request a second."""
    harness = make_harness()
    with harness.session_factory.begin() as session:
        integration = session.get(Integration, harness.integration_id)
        assert integration is not None
        integration.max_request_frequency = 1
    return harness


def request_tat_us(harness: Harness) -> int:
    return int(harness.redis.get(harness.keys.request_tat) or 0)


def test_the_first_request_leaves_on_the_slot_taken_with_the_claim(
    slow_harness: Harness,
) -> None:
    harness = slow_harness
    job_id = harness.submit()
    tats: list[int] = []
    connector = ScriptedConnector(
        [StepResult()], before=lambda: tats.append(request_tat_us(harness))
    )

    assert harness.runner(connector).run(job_id) == JobStatus.SUCCESS

    # The claim's own round trip took the slot (request_tat was set before the step ran),
    # and the request left on it: no second slot was taken.
    assert tats[0] > harness.redis_now_us() - 1_000_000
    assert request_tat_us(harness) == tats[0]


def test_a_slot_taken_with_the_claim_that_went_stale_is_given_back_for_a_fresh_one(
    slow_harness: Harness,
) -> None:
    harness = slow_harness
    job_id = harness.submit()
    tats: list[int] = []

    def freeze() -> None:
        # A pause between the claim and the request, far shorter than the lease: a request
        # leaving now would land closer to the next one than the limit allows.
        tats.append(request_tat_us(harness))
        harness.advance(0.5)

    connector = ScriptedConnector([StepResult()], before=freeze)
    assert harness.runner(connector).run(job_id) == JobStatus.SUCCESS

    assert connector.slots_taken == 1
    # The request left on a fresh slot, granted after the pause, not on the claim's.
    assert request_tat_us(harness) >= tats[0] + 500_000


def test_a_step_that_sends_nothing_gives_back_the_slot_taken_with_the_claim(
    slow_harness: Harness,
) -> None:
    harness = slow_harness
    job_id = harness.submit()
    silent = ScriptedConnector([StepResult()], exchanges_per_call=0)

    assert harness.runner(silent).run(job_id) == JobStatus.SUCCESS

    # Given back: the integration's next request may leave at once, not a second later.
    assert request_tat_us(harness) <= harness.redis_now_us()


def test_a_pacing_pass_that_came_back_late_gives_its_slot_back(
    slow_claim: tuple[Harness, Claim],
) -> None:
    harness, claim = slow_claim
    # The first slot is granted but the answer came back 14 ms later than the fastest (a
    # pause between the check and the send): the request would leave late and land too
    # close to the next one. Its slot is given back, and a fresh pass goes at once (at one
    # request a second, without the give-back it would have to wait a second).
    assert paced_passes(harness, claim, [0.015, 0.001]) == [Pace.GO, Pace.GO]


def test_a_constant_round_trip_is_never_stale(slow_claim: tuple[Harness, Claim]) -> None:
    harness, claim = slow_claim
    assert paced_passes(harness, claim, [0.001]) == [Pace.GO]


def test_late_pacing_passes_do_not_starve_a_job(slow_claim: tuple[Harness, Claim]) -> None:
    harness, claim = slow_claim
    passes = paced_passes(harness, claim, [0.5] * 100)
    assert passes == [Pace.GO] * (RequestPacer.MAX_STALE_PASSES + 1)


# --- children ----------------------------------------------------------------------------------


CONTACTS = [{"kind": "email", "email_1": "ada@example.com"}, {"kind": "phone", "phone_1": "555"}]


def test_spawned_children_are_admitted_and_published_at_once(
    make_harness: HarnessFactory,
) -> None:
    harness = make_harness(vendor=Vendor.RENT_MANAGER)
    root_id = harness.submit(
        "applicants", VALIDATE_THEN_CREATE, first_name="Ada", contacts=CONTACTS
    )
    runner = harness.runner(ScriptedConnector([StepResult()]))
    claim = runner.claim(root_id)
    assert claim is not None
    exchanges: list[Exchange] = []

    recorded = runner.record(claim, exchanges, runner.execute(claim, exchanges.append))

    # Admitted, and QUEUED by the record's own transaction; published only once it committed.
    [child_id] = recorded.spawned
    assert harness.job(child_id).status == JobStatus.QUEUED.value
    assert child_id not in [message.job_id for message in harness.publisher.published]

    # The whole run does the same by itself: the child is published before any dispatcher tick.
    second_root = harness.submit(
        "applicants", VALIDATE_THEN_CREATE, first_name="Grace", contacts=CONTACTS
    )
    published_before = len(harness.publisher.published)
    assert runner.run(second_root) == JobStatus.SUCCESS
    [child_msg] = harness.publisher.published[published_before:]
    child = harness.job(child_msg.job_id)
    assert (child.parent_job_id, child.status) == (second_root, JobStatus.QUEUED.value)


def test_children_are_spawned_linked_and_admitted(make_harness: HarnessFactory) -> None:
    harness = make_harness(vendor=Vendor.RENT_MANAGER)
    root_id = harness.submit(
        "applicants", VALIDATE_THEN_CREATE, first_name="Ada", contacts=CONTACTS
    )

    def admitted_since(count: int) -> list[AdmittedJob]:
        # Children are admitted by the runner or, at the latest, by the dispatcher's next tick.
        harness.dispatcher.tick()
        return harness.publisher.published[count:]

    validate = harness.runner(ScriptedConnector([StepResult()]))
    assert validate.run(root_id) == JobStatus.SUCCESS
    [create_msg] = admitted_since(1)
    assert (create_msg.model, create_msg.action) == ("applicants", "CREATE")
    assert create_msg.integration_id == harness.integration_id
    create = harness.job(create_msg.job_id)
    assert (create.root_job_id, create.parent_job_id) == (root_id, root_id)
    assert create.status == JobStatus.QUEUED.value
    assert create.payload == {"first_name": "Ada", "contacts": CONTACTS}
    assert harness.outcome(root_id).write_status == WriteStatus.PENDING

    creator = harness.runner(ScriptedConnector([StepResult(created_record_id="app-9")]))
    assert creator.run(create.id) == JobStatus.SUCCESS
    contact_msgs = admitted_since(2)
    assert [(m.model, m.action) for m in contact_msgs] == [("contacts", "CREATE")] * 2
    contact_jobs = [harness.job(m.job_id) for m in contact_msgs]
    assert sorted((j.payload["kind"], j.payload["applicant_id"]) for j in contact_jobs) == [
        ("email", "app-9"),
        ("phone", "app-9"),
    ]
    assert {(j.root_job_id, j.parent_job_id) for j in contact_jobs} == {(root_id, create.id)}

    attach = harness.runner(
        ScriptedConnector(
            [StepResult(created_record_id="c-1"), StepResult(created_record_id="c-2")]
        )
    )
    for job in contact_jobs:
        assert attach.run(job.id) == JobStatus.SUCCESS
    assert admitted_since(4) == []
    outcome = harness.outcome(root_id)
    assert outcome.write_status == WriteStatus.SUCCESS
    assert outcome.created_record_id == "app-9"
    assert harness.job(root_id).tree_total == 4
    assert harness.flow.usage(harness.integration_id).in_flight == 0


def test_children_past_the_tree_limit_fail_the_parent(make_harness: HarnessFactory) -> None:
    harness = make_harness(vendor=Vendor.SANDBOX, max_jobs_per_tree=2)
    contacts = [{"email_1": "a@example.com"}, {"email_1": "b@example.com"}]
    root_id = harness.submit("applicants", "CREATE", first_name="Ada", contacts=contacts)

    connector = ScriptedConnector([StepResult(created_record_id="app-1")])
    runner = harness.runner(connector)
    assert runner.run(root_id) == JobStatus.FAILURE

    assert len(harness.publisher.published) == 1  # only the root was ever published
    outcome = harness.outcome(root_id)
    assert outcome.write_status == WriteStatus.FAILURE
    assert "limit of 2 jobs per write" in outcome.errors[0]
    # Decided before the PMS was asked: no record created there that the write calls failed.
    assert connector.steps == []
    assert "nothing was sent to the PMS" in outcome.errors[0]


# --- lease reclaim -----------------------------------------------------------------------------


def test_expired_lease_goes_back_to_pending_with_outcome_unknown(harness: Harness) -> None:
    job_id = harness.submit()
    runner = harness.runner(ScriptedConnector([StepResult()]))
    redis_before = harness.redis_now_us()
    claim = runner.claim(job_id)
    assert claim is not None
    # The lease in the job store is on Redis's clock, as is the claim lease in Redis.
    lease_expires_at = harness.job(job_id).lease_expires_at
    assert lease_expires_at is not None
    lease_end_us = round(lease_expires_at.timestamp() * 1_000_000)
    assert (
        redis_before + LEASE_S * 1_000_000
        <= lease_end_us
        <= harness.redis_now_us() + LEASE_S * 1_000_000
    )
    assert harness.lease_us(claim_member(job_id, 1)) == lease_end_us

    harness.advance(LEASE_S - 1)  # not yet past it
    assert harness.healer.reclaim_expired_leases() == 0
    assert harness.job(job_id).status == JobStatus.RUNNING.value

    # Keep the integration paused so the reclaimed job stays PENDING for inspection.
    harness.flow.pause(harness.integration_id, 60.0)
    harness.advance(1.001)
    assert harness.healer.reclaim_expired_leases() == 1
    assert harness.lease_us(claim_member(job_id, 1)) is None

    job = harness.job(job_id)
    assert job.status == JobStatus.PENDING.value
    assert job.outcome_unknown is True
    assert job.lease_expires_at is None
    assert job.due_at == harness.clock.now
    assert job.deliveries == 1
    assert harness.flow.in_backlog(harness.integration_id, [job_id]) == [True]
    # A second reclaim finds nothing; once the pause ends the next tick admits it again.
    assert harness.healer.reclaim_expired_leases() == 0
    assert len(harness.publisher.published) == 1
    harness.advance(60.0)
    harness.dispatcher.tick()
    assert len(harness.publisher.published) == 2
    assert harness.publisher.published[-1].job_id == job_id
    assert harness.job(job_id).status == JobStatus.QUEUED.value


def test_a_job_waiting_in_the_broker_past_its_lease_keeps_the_concurrency_limit(
    make_harness: HarnessFactory,
) -> None:
    # The lease admission gave a job lapses while its message waits in the broker (every
    # worker busy elsewhere); admission then gives the slot to another job. When both messages
    # are delivered, only one of them may reach the PMS at a time.
    harness = make_harness()
    with harness.session_factory.begin() as session:
        integration = session.get(Integration, harness.integration_id)
        assert integration is not None
        integration.max_job_concurrency = 1
    harness.submit()
    harness.redis_clock.advance_us(round((LEASE_S + 1) * 1_000_000))
    second = new_id()
    with harness.session_factory.begin() as session:
        session.add(
            Job(
                id=second,
                root_job_id=second,
                account_id=harness.account_id,
                integration_id=harness.integration_id,
                model="residents",
                action="CREATE",
                payload={"first_name": "Grace"},
                due_at=harness.clock.now,
            )
        )
    assert harness.dispatcher.submit(harness.integration_id, [second]) == 1
    undelivered = [message.job_id for message in harness.publisher.published]
    at_the_pms = 0
    most_at_once = 0

    def deliver_the_rest_meanwhile() -> None:
        nonlocal at_the_pms, most_at_once
        at_the_pms += 1
        most_at_once = max(most_at_once, at_the_pms)
        while undelivered:  # the other worker takes its message while this job runs
            runner.run(undelivered.pop(0))
        at_the_pms -= 1

    runner = harness.runner(ScriptedConnector([StepResult()], during=deliver_the_rest_meanwhile))
    while undelivered:
        runner.run(undelivered.pop(0))

    assert most_at_once == 1


def test_a_job_given_back_at_claim_keeps_its_turn(make_harness: HarnessFactory) -> None:
    # Admitted, then its message waited in the broker past the admission lease while another
    # job took the only slot: at claim it cannot run and goes back to its backlog. It had its
    # turn already, so it goes back at the head, not behind every job that arrived meanwhile
    # (behind a long backlog it would wait minutes for a slot it was once given).
    harness = make_harness()
    with harness.session_factory.begin() as session:
        integration = session.get(Integration, harness.integration_id)
        assert integration is not None
        integration.max_job_concurrency = 1
    first = harness.submit()
    harness.redis_clock.advance_us(round((LEASE_S + 1) * 1_000_000))
    second = harness.submit()  # admitted at once: the first one's admission lease lapsed
    waiting = [new_id() for _ in range(3)]  # arrive while the slot is taken
    with harness.session_factory.begin() as session:
        for job_id in waiting:
            session.add(
                Job(
                    id=job_id,
                    root_job_id=job_id,
                    account_id=harness.account_id,
                    integration_id=harness.integration_id,
                    model="residents",
                    action="CREATE",
                    payload={"first_name": "Ada"},
                    due_at=harness.clock.now,
                )
            )
    assert harness.dispatcher.submit(harness.integration_id, waiting) == 0
    published = [message.job_id for message in harness.publisher.published]
    assert published == [first, second]

    runner = harness.runner(ScriptedConnector([]))
    assert runner.run(first) is None  # no slot: given back, not run

    given_back = harness.job(first)
    assert given_back.status == JobStatus.PENDING.value
    # Untouched: the claim that found no slot counted no delivery, attempt or lost claim.
    assert (given_back.deliveries, given_back.attempts, given_back.unrecorded_claims) == (0, 0, 0)
    assert given_back.lease_expires_at is None
    head = harness.redis.zrange(harness.keys.backlog, 0, 0)
    assert head == [first.encode()]
    assert all(harness.backlog_due_us(job_id) is not None for job_id in waiting)


# --- statements per claim and record -------------------------------------------------------------


@contextmanager
def statements(harness: Harness) -> Iterator[list[str]]:
    """The SQL statements sent to the job store meanwhile, as `VERB table` (a count of
    statements, not a timing)."""
    with harness.session_factory.begin() as session:
        engine = session.get_bind()
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The table a statement reads or writes, not one a subquery of it reads.
        while re.search(r"\([^()]*\)", statement):
            statement = re.sub(r"\([^()]*\)", "", statement)
        words = statement.split()
        verb = words[0].upper()
        before_table = {"INSERT": "INTO", "UPDATE": "UPDATE", "SELECT": "FROM", "DELETE": "FROM"}
        marker = before_table.get(verb)
        upper = [word.upper() for word in words]
        table = words[upper.index(marker) + 1] if marker in upper[:-1] else ""
        sent.append(f"{verb} {table}".strip())

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_a_claim_is_one_update_once_the_integration_and_redis_clock_are_known(
    harness: Harness,
) -> None:
    first, second = harness.submit(), harness.submit()
    runner = harness.runner(ScriptedConnector([StepResult()]))

    with statements(harness) as sent:
        assert runner.claim(first) is not None
    # The integration read, and the lease stamped from Redis's answer once it was granted.
    assert sent == ["BEGIN", "UPDATE jobs", "SELECT integrations", "UPDATE jobs"]
    first_lease = harness.job(first).lease_expires_at
    assert first_lease is not None
    assert harness.lease_us(claim_member(first, 1)) == round(first_lease.timestamp() * 1_000_000)

    with statements(harness) as sent:
        claim = runner.claim(second)
    # The integration is this process's copy, still current (same version): not read again;
    # the lease Redis was going to grant was stamped by the UPDATE itself.
    assert sent == ["BEGIN", "UPDATE jobs"]
    assert claim is not None
    job = harness.job(second)
    assert (job.status, job.deliveries, job.attempts, job.unrecorded_claims) == (
        JobStatus.RUNNING.value,
        1,
        1,
        1,
    )
    assert (job.started_at, job.updated_at) == (T0, T0)
    assert job.lease_expires_at is not None
    stamped_us = round(job.lease_expires_at.timestamp() * 1_000_000)
    granted_us = harness.lease_us(claim_member(second, 1))
    assert granted_us is not None
    assert (
        abs(granted_us - stamped_us) <= LEASE_S * RedisClockEstimate.LEASE_STAMP_SLACK * 1_000_000
    )


def test_a_claim_stamps_redis_lease_again_when_redis_clock_jumped(harness: Harness) -> None:
    first, second = harness.submit(), harness.submit()
    runner = harness.runner(ScriptedConnector([StepResult()]))
    assert runner.claim(first) is not None
    harness.redis_clock.advance_us(60 * 1_000_000)  # Redis's clock was stepped a minute on

    with statements(harness) as sent:
        assert runner.claim(second) is not None

    assert sent == ["BEGIN", "UPDATE jobs", "UPDATE jobs"]
    lease = harness.job(second).lease_expires_at
    assert lease is not None
    assert harness.lease_us(claim_member(second, 1)) == round(lease.timestamp() * 1_000_000)


def test_a_claim_after_the_integration_changed_runs_with_the_change(harness: Harness) -> None:
    first, second = harness.submit(), harness.submit()
    runner = harness.runner(ScriptedConnector([StepResult()]))
    before = runner.claim(first)
    assert before is not None and before.integration.base_url is None

    with harness.session_factory.begin() as session:
        integration = session.get(Integration, harness.integration_id)
        assert integration is not None
        integration.base_url = "https://pms.example/new"
        integration.credentials_encrypted = b"rotated"
    after = runner.claim(second)

    assert after is not None
    assert after.integration.base_url == "https://pms.example/new"
    assert after.integration.credentials_encrypted == b"rotated"


def _run(runner: JobRunner, job_id: str) -> tuple[Claim, list[Exchange], Outcome]:
    claim = runner.claim(job_id)
    assert claim is not None
    exchanges: list[Exchange] = []
    return claim, exchanges, runner.execute(claim, exchanges.append)


def test_a_record_is_one_insert_of_its_logs_one_guarded_update_and_the_cache_upsert(
    harness: Harness,
) -> None:
    first, second = harness.submit(), harness.submit()
    results = [
        StepResult(created_record_id=f"res-{n}", record={"id": f"res-{n}", "first_name": "Ada"})
        for n in (1, 2)
    ]
    runner = harness.runner(ScriptedConnector(results, exchanges_per_call=3))
    runner.record(*_run(runner, first))
    claim, exchanges, outcome = _run(runner, second)

    with statements(harness) as sent:
        recorded = runner.record(claim, exchanges, outcome)

    assert (recorded.status, recorded.applied) == (JobStatus.SUCCESS, True)
    # A root job is its own root: the fencing, the outcome, the claim's reset and the root's
    # counters are one UPDATE, with no read before it. The account's webhook endpoints and the
    # integration's enum mappings are this process's copies, read by the first record and
    # still current (the UPDATE read their versions back).
    assert sent == ["BEGIN", "INSERT job_logs", "UPDATE jobs", "INSERT records"]
    assert len(harness.logs(second)) == 3
    with harness.session_factory() as session:
        cached = session.scalars(select(Record).where(Record.pms_id == "res-2")).one()
    assert (cached.pms_id, cached.data, cached.synced_at) == ("res-2", results[1].record, T0)


def test_a_run_is_two_transactions_its_records_queueing_the_job_it_admits(
    harness: Harness,
) -> None:
    harness.one_at_a_time()
    runner = harness.runner(ScriptedConnector([StepResult()]))
    assert runner.run(harness.submit()) == JobStatus.SUCCESS  # reads what a runner keeps
    first, waiting = harness.submit(), harness.store()
    assert harness.dispatcher.submit(harness.integration_id, [waiting]) == 0  # no free slot

    with statements(harness) as sent:
        assert runner.run(first) == JobStatus.SUCCESS

    # The claim's transaction, then the record's: the outcome, then the job its finish
    # admitted into the freed slot moved to QUEUED, committed together; no third transaction.
    assert sent == [
        "BEGIN",
        "UPDATE jobs",
        "BEGIN",
        "INSERT job_logs",
        "UPDATE jobs",
        "UPDATE jobs",
    ]
    assert harness.job(waiting).status == JobStatus.QUEUED.value
    assert harness.publisher.published[-1].job_id == waiting


def _flow_down(*_args: Any, **_kwargs: Any) -> Any:
    raise redis.ConnectionError("Redis is restarting")


def test_a_redis_failure_after_the_outcome_never_rolls_it_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = harness.submit()
    written = {"id": "res-1", "first_name": "Ada"}
    runner = harness.runner(ScriptedConnector([StepResult("res-1", record=written)]))
    monkeypatch.setattr(harness.flow, "finish", _flow_down)

    # Raised as when flow control was told after the commit: the task fails, the write not.
    with pytest.raises(redis.ConnectionError):
        runner.run(job_id)

    job = harness.job(job_id)
    assert (job.status, job.created_record_id, job.unrecorded_claims) == (
        JobStatus.SUCCESS.value,
        "res-1",
        0,
    )
    assert harness.outcome(job_id).write_status == WriteStatus.SUCCESS
    assert len(harness.logs(job_id)) == 1
    with harness.session_factory() as session:
        cached = session.scalars(select(Record).where(Record.pms_id == "res-1")).one()
    assert cached.data == written
    # Flow control heard nothing: the claim's lease stays until it lapses by itself.
    assert harness.lease_us(claim_member(job_id, 1)) is not None


def test_children_recorded_while_redis_fails_come_back_through_the_orphan_sweep(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = make_harness(vendor=Vendor.RENT_MANAGER)
    root_id = harness.submit(
        "applicants", VALIDATE_THEN_CREATE, first_name="Ada", contacts=CONTACTS
    )
    runner = harness.runner(ScriptedConnector([StepResult()]))
    with monkeypatch.context() as patched, pytest.raises(redis.ConnectionError):
        patched.setattr(harness.flow, "finish", _flow_down)
        runner.run(root_id)

    with harness.session_factory() as session:
        [child] = session.scalars(select(Job).where(Job.parent_job_id == root_id)).all()
    assert (harness.job(root_id).status, child.status) == (
        JobStatus.SUCCESS.value,
        JobStatus.PENDING.value,
    )
    assert harness.flow.in_backlog(harness.integration_id, [child.id]) == [False]

    harness.advance(ORPHAN_AGE_S + 1)
    assert harness.healer.enqueue_orphans() == 1
    assert harness.publisher.published[-1].job_id == child.id
    assert harness.job(child.id).status == JobStatus.QUEUED.value


def test_a_record_rolled_back_after_flow_control_heard_leaves_nothing_runnable(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record's transaction fails after its finish released the claim and admitted the
    next job: the job is not recorded and the admitted one never QUEUED, so nothing runs
    twice or out of turn; the healer brings both back as after a lost worker."""
    harness.one_at_a_time()
    first, waiting = harness.submit(), harness.store()
    assert harness.dispatcher.submit(harness.integration_id, [waiting]) == 0
    runner = harness.runner(ScriptedConnector([StepResult()]))

    def store_down(*_args: Any) -> Any:
        raise OperationalError("UPDATE jobs", {}, Exception("the job store went away"))

    with monkeypatch.context() as patched, pytest.raises(OperationalError):
        patched.setattr(dispatch_module, "queue_admitted", store_down)
        runner.run(first)

    assert harness.job(first).status == JobStatus.RUNNING.value
    assert harness.job(waiting).status == JobStatus.PENDING.value
    assert [message.job_id for message in harness.publisher.published] == [first]
    assert harness.lease_us(claim_member(first, 1)) is None  # released by the finish
    assert harness.lease_us(waiting) is not None  # admitted by it: lapses unused

    harness.advance(LEASE_S + 1)
    harness.healer.heal()
    # The job's claim lapsed in the job store: it runs again, its outcome unknown; the one
    # admitted in the rolled-back transaction is back in its backlog, behind it.
    job = harness.job(first)
    assert (job.status, job.outcome_unknown) == (JobStatus.QUEUED.value, True)
    assert harness.publisher.published[-1].job_id == first
    assert harness.flow.in_backlog(harness.integration_id, [waiting]) == [True]
    assert runner.run(first) == JobStatus.SUCCESS
    assert harness.publisher.published[-1].job_id == waiting
    assert runner.run(waiting) == JobStatus.SUCCESS


def _endpoint(harness: Harness, events: Sequence[WebhookEvent]) -> str:
    with harness.session_factory.begin() as session:
        endpoint = WebhookEndpoint(
            account_id=harness.account_id,
            url="http://x/h",
            events=[e.value for e in events],
            secret_encrypted=b"unused",
        )
        session.add(endpoint)
        session.flush()
        return endpoint.id


def _events_of(harness: Harness, endpoint_id: str) -> list[str]:
    with harness.session_factory() as session:
        stmt = select(WebhookDelivery.event).where(WebhookDelivery.endpoint_id == endpoint_id)
        return sorted(session.scalars(stmt))


def test_a_record_sends_to_the_webhook_endpoints_of_its_transaction_not_to_older_ones(
    harness: Harness,
) -> None:
    # The runner keeps the account's endpoints; every change of them must reach its next
    # record, or events would go to endpoints deleted or miss endpoints just added.
    jobs = [harness.submit() for _ in range(4)]
    runner = harness.runner(ScriptedConnector([StepResult() for _ in jobs]))
    runner.record(*_run(runner, jobs[0]))  # the account has no endpoint yet: kept as such

    endpoint_id = _endpoint(harness, [WebhookEvent.JOB_SUCCESS])
    runner.record(*_run(runner, jobs[1]))
    assert _events_of(harness, endpoint_id) == ["JOB_SUCCESS"]

    with harness.session_factory.begin() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.events = [WebhookEvent.WRITE_OPERATION_SUCCESS.value]
    runner.record(*_run(runner, jobs[2]))
    assert _events_of(harness, endpoint_id) == ["JOB_SUCCESS", "WRITE_OPERATION_SUCCESS"]

    with harness.session_factory.begin() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.active = False
    runner.record(*_run(runner, jobs[3]))
    assert _events_of(harness, endpoint_id) == ["JOB_SUCCESS", "WRITE_OPERATION_SUCCESS"]


def test_a_record_normalizes_with_the_enum_mappings_of_its_transaction_not_older_ones(
    harness: Harness,
) -> None:
    jobs = [harness.submit() for _ in range(3)]
    results = [StepResult(record={"id": f"r{n}", "type": "Main"}) for n in range(3)]
    runner = harness.runner(ScriptedConnector(results))
    mappings = NormalizationService(harness.session_factory)

    def normalized_type(pms_id: str) -> str:
        with harness.session_factory() as session:
            record = session.scalars(select(Record).where(Record.pms_id == pms_id)).one()
            return str(record.data["type_normalized"])

    runner.record(*_run(runner, jobs[0]))
    assert normalized_type("r0") == "OTHER"  # the vendor's default, now kept by the runner

    custom = EnumMappingUpdate(mappings={"Main": "PRIMARY"}, default_value="OTHER")
    mappings.put(harness.account_id, "residents", "type", harness.integration_id, custom)
    runner.record(*_run(runner, jobs[1]))
    assert normalized_type("r1") == "PRIMARY"

    mappings.delete(harness.account_id, "residents", "type", harness.integration_id)
    runner.record(*_run(runner, jobs[2]))
    assert normalized_type("r2") == "OTHER"


def test_a_job_queued_again_between_the_claims_update_and_its_lock_is_claimed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL each statement reads its own snapshot: the claim's UPDATE can miss a job
    # that an admission committed as QUEUED an instant later, before the claim locks it.
    job_id = harness.submit()
    start_run = runner_module.start_run
    calls = []

    def missed_once(connection: Connection, *args: Any) -> Any:
        calls.append(args)
        return None if len(calls) == 1 else start_run(connection, *args)

    monkeypatch.setattr(runner_module, "start_run", missed_once)
    claim = harness.runner(ScriptedConnector([StepResult()])).claim(job_id)

    assert len(calls) == 2
    assert claim is not None and claim.delivery == 1
    job = harness.job(job_id)
    assert (job.status, job.deliveries) == (JobStatus.RUNNING.value, 1)
    assert harness.lease_us(claim_member(job_id, 1)) is not None

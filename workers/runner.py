"""Runs one job: claim -> execute at the PMS -> record the outcome (and spawn children).

Claim and record are short transactions; the PMS call happens between them with no
transaction open. The claim takes a lease and a delivery number; the record step only
applies its outcome if the job is still RUNNING under that same delivery (a fencing token), so
a worker that outlived its lease cannot overwrite the outcome of the job's next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.enums import JobStatus
from models.job import Job, JobLog
from pms.connector import ChildSpec, Exchange, Step, StepResult
from pms.profiles import CREATE, UPDATE
from pms.workflow import children_after
from pmsq.errors import PmsError, PmsThrottled
from pmsq.logs import log_context
from pmsq.metrics import MetricsRecorder, NullMetrics
from pmsq.settings import Settings
from scheduler.cache import record_key, store
from scheduler.starter import SYNC_ACTION
from scheduler.sync_runner import SyncLease, SyncRunner
from workers.aggregator import finish_job
from workers.backoff import retry_delay_s
from workers.connectors import ConnectorFactory, IntegrationSnapshot
from workers.dispatch import Dispatcher, poison_message
from workers.flow.backend import FlowControl
from workers.heartbeat import LeaseHeartbeat
from workers.repository import JobRepository
from workers.transitions import transition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    job_id: str
    root_job_id: str
    delivery: int
    attempt: int
    step: Step
    integration: IntegrationSnapshot


@dataclass(frozen=True)
class Succeeded:
    result: StepResult
    children: list[ChildSpec]
    sync_status: str | None = None


@dataclass(frozen=True)
class Failed:
    error: PmsError


Outcome = Succeeded | Failed


@dataclass(frozen=True)
class Recorded:
    """What `record` did: the job's status after it, and what flow control must follow up."""

    status: JobStatus | None
    #: False when this claim no longer held the job (fenced out, or already finished).
    applied: bool
    spawned: list[str] = field(default_factory=list)
    retry_delay_s: float = 0.0
    pms_headers: dict[str, str] = field(default_factory=dict)
    #: Set when this outcome completed the whole write.
    write_latency_s: float | None = None
    #: A sync job's own verdict (its execution's status).
    sync_status: str | None = None


class RequestPacer:
    """Holds each PMS request until the integration's pacing lets it leave.

    Admission already spaces jobs; this closes the gap between admission and the moment the
    request leaves, checked on Redis's clock at that moment, so the PMS sees requests no closer
    than the limit allows (and none while the integration is paused after a 429).
    """

    #: Longest single sleep; a pause or a change of limits is re-checked after it.
    MAX_WAIT_S = 1.0

    def __init__(
        self, flow: FlowControl, integration_id: str, reload_limits: Callable[[str], None]
    ) -> None:
        self._flow = flow
        self._integration_id = integration_id
        self._reload_limits = reload_limits

    def wait_for_slot(self) -> None:
        while True:
            allowed, wait_s = self._flow.pace(self._integration_id)
            if allowed is None:
                self._reload_limits(self._integration_id)
            elif allowed:
                return
            else:
                time.sleep(min(wait_s, self.MAX_WAIT_S))


class JobRunner:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        connectors: ConnectorFactory,
        dispatcher: Dispatcher,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._metrics = metrics or NullMetrics()
        self._connectors = connectors
        self._dispatcher = dispatcher
        self._flow = dispatcher.flow
        self._settings = settings
        self._clock = clock
        self._syncs = SyncRunner(session_factory, clock)

    def run(self, job_id: str) -> JobStatus | None:
        """Run the job if it is QUEUED; returns its status afterwards, None if not run."""
        with log_context(job_id=job_id):
            claim = self.claim(job_id)
        if claim is None:
            return None
        with log_context(
            job_id=job_id, root_job_id=claim.root_job_id, integration_id=claim.integration.id
        ):
            return self._run_claimed(claim)

    def _run_claimed(self, claim: Claim) -> JobStatus | None:
        # The admission lease may have lapsed while the message waited in the broker: hold a
        # slot again (on Redis's clock, never a worker's) before touching the PMS.
        if not self._flow.hold(claim.integration.id, claim.job_id, self._settings.job_lease_s):
            self._give_back(claim)
            return JobStatus.PENDING
        exchanges: list[Exchange] = []
        started = time.monotonic()
        with LeaseHeartbeat(
            flow=self._flow,
            session_factory=self._session_factory,
            integration_id=claim.integration.id,
            job_id=claim.job_id,
            delivery=claim.delivery,
            lease_s=self._settings.job_lease_s,
            clock=self._clock,
        ):
            outcome = self.execute(claim, exchanges.append)
        recorded = self.record(claim, exchanges, outcome)
        self._after_record(claim, outcome, recorded)
        self._observe(claim, outcome, recorded, time.monotonic() - started)
        return recorded.status

    def _observe(
        self, claim: Claim, outcome: Outcome, recorded: Recorded, duration_s: float
    ) -> None:
        integration_id = claim.integration.id
        if isinstance(outcome, Failed) and isinstance(outcome.error, PmsThrottled):
            self._metrics.count("pmsq_pms_429", integration_id=integration_id)
        label = "fenced" if not recorded.applied else (recorded.status or "none").lower()
        if recorded.status == JobStatus.PENDING:
            label = "retry"
        self._metrics.count("pmsq_job_outcomes", integration_id=integration_id, outcome=label)
        self._metrics.observe("pmsq_job_duration_seconds", duration_s)
        if recorded.write_latency_s is not None:
            self._metrics.observe("pmsq_write_latency_seconds", recorded.write_latency_s)
        if claim.step.action == SYNC_ACTION and recorded.status in (
            JobStatus.SUCCESS,
            JobStatus.FAILURE,
        ):
            status = recorded.sync_status or recorded.status.value
            self._metrics.count("pmsq_sync_outcomes", integration_id=integration_id, status=status)

    def _after_record(self, claim: Claim, outcome: Outcome, recorded: Recorded) -> None:
        """Flow-control side of an outcome, once it is committed."""
        integration_id = claim.integration.id
        # What the PMS said holds whoever heard it, even a worker fenced out of its job.
        if isinstance(outcome, Failed) and isinstance(outcome.error, PmsThrottled):
            self._flow.pause(integration_id, outcome.error.retry_after_s or 0.0)
        if exchanges_headers := recorded.pms_headers:
            self._flow.record_pms_limits(integration_id, exchanges_headers)
        if not recorded.applied:
            return  # fenced out: the slot belongs to the job's newer delivery
        backlog = self._flow.release(integration_id, claim.job_id)
        if recorded.status == JobStatus.PENDING:
            self._dispatcher.submit(integration_id, [claim.job_id], recorded.retry_delay_s)
        if recorded.spawned:
            self._dispatcher.submit(integration_id, recorded.spawned)
        elif backlog:
            # The freed slot goes to the next waiting job at once, not at the next tick.
            self._dispatcher.admit_integration(integration_id)

    def _give_back(self, claim: Claim) -> None:
        """The job's concurrency lease lapsed while it waited and no slot is free: it goes
        back to its backlog untouched (no attempt, no lost delivery counted)."""
        logger.warning("job %s: no concurrency slot at claim, back to the backlog", claim.job_id)
        now = self._clock()
        with self._session_factory.begin() as session:
            job = JobRepository(session).lock(claim.job_id)
            if job is None or job.status != JobStatus.RUNNING.value:
                return
            if job.deliveries != claim.delivery:
                return
            transition(job, JobStatus.PENDING, now)
            job.due_at = now
            job.lease_expires_at = None
            job.attempts -= 1
            job.unrecorded_claims -= 1
        self._dispatcher.submit(claim.integration.id, [claim.job_id])

    def _after_final(self, integration_id: str, job_id: str) -> None:
        self._flow.release(integration_id, job_id)
        self._dispatcher.admit_integration(integration_id)

    def claim(self, job_id: str) -> Claim | None:
        """Take the job if it is QUEUED: RUNNING, with a lease and a new delivery number."""
        now = self._clock()
        poisoned: Job | None = None
        with self._session_factory.begin() as session:
            repo = JobRepository(session)
            job = repo.lock(job_id)
            if job is None:
                logger.warning("job %s: not in the job store, message dropped", job_id)
                return None
            if job.status != JobStatus.QUEUED.value:
                logger.info("job %s: is %s, duplicate message dropped", job_id, job.status)
                return None
            if job.unrecorded_claims >= self._settings.max_deliveries:
                message = poison_message(job.unrecorded_claims)
                self._finish(session, job, JobStatus.FAILURE, now, message)
                poisoned = job
            else:
                integration = repo.integration(job.integration_id)
                assert integration is not None  # enforced by the foreign key
                transition(job, JobStatus.RUNNING, now)
                job.deliveries += 1
                job.unrecorded_claims += 1
                job.attempts += 1
                job.lease_expires_at = now + timedelta(seconds=self._settings.job_lease_s)
                return Claim(
                    job_id=job.id,
                    root_job_id=job.root_job_id,
                    delivery=job.deliveries,
                    attempt=job.attempts,
                    step=_step_of(job),
                    integration=IntegrationSnapshot.of(integration),
                )
        self._after_final(poisoned.integration_id, poisoned.id)
        return None

    def execute(self, claim: Claim, log: Callable[[Exchange], None]) -> Outcome:
        try:
            pacer = RequestPacer(self._flow, claim.integration.id, self._dispatcher.load_limits)
            connector, profile = self._connectors.build(claim.integration, pacer.wait_for_slot)
            if claim.step.action == SYNC_ACTION:
                execution_id = str(claim.step.payload["execution_id"])
                lease = SyncLease(claim.job_id, claim.delivery)
                execution = self._syncs.run(
                    execution_id, claim.integration.id, lease, connector, log
                )
                return Succeeded(StepResult(), [], execution.status)
            result = connector.execute(claim.step, log)
            children = children_after(profile, claim.step, result.created_record_id)
            return Succeeded(result, children)
        except PmsError as error:
            return Failed(error)
        except Exception as exc:  # a bug or an unexpected PMS answer: fail, don't loop
            logger.exception("job %s: unexpected error", claim.job_id)
            return Failed(PmsError(f"internal error: {type(exc).__name__}", retryable=False))

    def record(self, claim: Claim, exchanges: list[Exchange], outcome: Outcome) -> Recorded:
        """Store the exchanges and apply the outcome, if this claim still holds the job."""
        now = self._clock()
        headers = exchanges[-1].response_headers if exchanges else {}
        with self._session_factory.begin() as session:
            session.add_all(_log_rows(claim, exchanges, now))
            job = JobRepository(session).lock(claim.job_id)
            if job is None or job.status != JobStatus.RUNNING.value:
                return Recorded(None, applied=False, pms_headers=headers)
            if job.deliveries != claim.delivery:
                logger.warning("job %s: lease lost to a newer delivery, outcome dropped", job.id)
                return Recorded(None, applied=False, pms_headers=headers)
            job.unrecorded_claims = 0
            if isinstance(outcome, Succeeded):
                self._cache_written_record(session, job, outcome.result, now)
                spawned = finish_job(
                    session,
                    job,
                    JobStatus.SUCCESS,
                    now,
                    max_jobs_per_tree=self._settings.max_jobs_per_tree,
                    created_record_id=outcome.result.created_record_id,
                    children=outcome.children,
                )
                return Recorded(
                    JobStatus(job.status),
                    True,
                    [child.id for child in spawned],
                    0.0,
                    headers,
                    _write_latency_s(session, job, now),
                    outcome.sync_status,
                )
            delay_s = self._apply_failure(session, job, outcome.error, now)
            return Recorded(
                JobStatus(job.status),
                True,
                [],
                delay_s,
                headers,
                _write_latency_s(session, job, now),
            )

    @staticmethod
    def _cache_written_record(
        session: Session, job: Job, result: StepResult, now: datetime
    ) -> None:
        """Read-back: the cache keeps the PMS's version of what was written (seed 001)."""
        if job.action in (CREATE, UPDATE) and result.record and record_key(result.record):
            store(session, job.integration_id, job.model, result.record, now)

    def _apply_failure(self, session: Session, job: Job, error: PmsError, now: datetime) -> float:
        """Defer or fail the job; returns the deferral in seconds (0 when it failed)."""
        # Kept on a failed job too: a retry-write copies it and must read back first.
        job.outcome_unknown = job.outcome_unknown or error.outcome_unknown
        if isinstance(error, PmsThrottled):
            # The PMS's back-pressure is not the job's fault: no attempt is burned, and the
            # integration's pause (not a job delay) holds it back until Retry-After.
            job.attempts -= 1
            delay = 0.0
        elif error.retryable and job.attempts < self._settings.max_attempts:
            delay = retry_delay_s(
                job.attempts, self._settings.retry_base_s, self._settings.retry_max_s
            )
        else:
            message = error.message
            if error.retryable:
                message = f"{message} (gave up after {job.attempts} attempts)"
            self._finish(session, job, JobStatus.FAILURE, now, message)
            return 0.0
        self._defer(job, now, delay, error.message)
        return delay

    def _defer(self, job: Job, now: datetime, delay_s: float, last_error: str) -> None:
        transition(job, JobStatus.PENDING, now)
        job.due_at = now + timedelta(seconds=delay_s)
        job.lease_expires_at = None
        job.error = last_error

    def _finish(
        self, session: Session, job: Job, status: JobStatus, now: datetime, error: str
    ) -> None:
        finish_job(
            session,
            job,
            status,
            now,
            max_jobs_per_tree=self._settings.max_jobs_per_tree,
            error=error,
        )


def _write_latency_s(session: Session, job: Job, now: datetime) -> float | None:
    """Seconds from acceptance to final status, when this outcome completed the write."""
    if job.status not in (JobStatus.SUCCESS.value, JobStatus.FAILURE.value):
        return None
    root = session.get(Job, job.root_job_id)  # already loaded (locked) by finish_job
    if root is None or root.tree_finished < root.tree_total:
        return None
    return (now - root.created_at).total_seconds()


def _step_of(job: Job) -> Step:
    return Step(
        model=job.model,
        action=job.action,
        target_id=job.target_id,
        payload=dict(job.payload),
        idempotency_key=job.idempotency_key,
        outcome_unknown=job.outcome_unknown,
        accepted_at=job.created_at,
    )


def _log_rows(claim: Claim, exchanges: list[Exchange], now: datetime) -> list[JobLog]:
    return [
        JobLog(
            job_id=claim.job_id,
            attempt=claim.attempt,
            method=ex.method,
            url=ex.url,
            request_headers=ex.request_headers,
            request_body=ex.request_body,
            response_status=ex.response_status,
            response_headers=ex.response_headers,
            response_body=ex.response_body,
            duration_ms=ex.duration_ms,
            error=ex.error,
            created_at=now,
        )
        for ex in exchanges
    ]

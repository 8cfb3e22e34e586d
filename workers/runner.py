"""Runs one job: claim -> execute at the PMS -> record the outcome (and spawn children).

Claim and record are short transactions; the PMS call happens between them with no
transaction open. The claim takes a lease and a delivery number; the record step only
applies its outcome if the job is still RUNNING under that same delivery (a fencing token), so
a worker that outlived its lease cannot overwrite the outcome of the job's next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.enums import JobStatus
from models.job import Job, JobLog
from pms.connector import ChildSpec, Exchange, Step, StepResult
from pms.workflow import children_after
from pmsq.errors import PmsError, PmsThrottled
from pmsq.settings import Settings
from workers.aggregator import finish_job
from workers.backoff import retry_delay_s
from workers.connectors import ConnectorFactory, IntegrationSnapshot
from workers.dispatch import Dispatcher, poison_message
from workers.repository import JobRepository
from workers.transitions import transition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    job_id: str
    delivery: int
    attempt: int
    step: Step
    integration: IntegrationSnapshot


@dataclass(frozen=True)
class Succeeded:
    result: StepResult
    children: list[ChildSpec]


@dataclass(frozen=True)
class Failed:
    error: PmsError


Outcome = Succeeded | Failed


class JobRunner:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        connectors: ConnectorFactory,
        dispatcher: Dispatcher,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._connectors = connectors
        self._dispatcher = dispatcher
        self._settings = settings
        self._clock = clock

    def run(self, job_id: str) -> JobStatus | None:
        """Run the job if it is QUEUED; returns its status afterwards, None if not run."""
        claim = self.claim(job_id)
        if claim is None:
            return None
        exchanges: list[Exchange] = []
        outcome = self.execute(claim, exchanges.append)
        status, spawned = self.record(claim, exchanges, outcome)
        self._dispatcher.admit(spawned)
        return status

    def claim(self, job_id: str) -> Claim | None:
        now = self._clock()
        with self._session_factory.begin() as session:
            repo = JobRepository(session)
            job = repo.lock(job_id)
            if job is None:
                logger.warning("job %s: not in the job store, message dropped", job_id)
                return None
            if job.status != JobStatus.QUEUED.value:
                logger.info("job %s: is %s, duplicate message dropped", job_id, job.status)
                return None
            if job.deliveries >= self._settings.max_deliveries:
                self._finish(session, job, JobStatus.FAILURE, now, poison_message(job.deliveries))
                return None
            integration = repo.integration(job.integration_id)
            assert integration is not None  # enforced by the foreign key
            transition(job, JobStatus.RUNNING, now)
            job.deliveries += 1
            job.attempts += 1
            job.lease_expires_at = now + timedelta(seconds=self._settings.job_lease_s)
            return Claim(
                job_id=job.id,
                delivery=job.deliveries,
                attempt=job.attempts,
                step=_step_of(job),
                integration=IntegrationSnapshot.of(integration),
            )

    def execute(self, claim: Claim, log: Callable[[Exchange], None]) -> Outcome:
        try:
            connector, profile = self._connectors.build(claim.integration)
            result = connector.execute(claim.step, log)
            children = children_after(profile, claim.step, result.created_record_id)
            return Succeeded(result, children)
        except PmsError as error:
            return Failed(error)
        except Exception as exc:  # a bug or an unexpected PMS answer: fail, don't loop
            logger.exception("job %s: unexpected error", claim.job_id)
            return Failed(PmsError(f"internal error: {type(exc).__name__}", retryable=False))

    def record(
        self, claim: Claim, exchanges: list[Exchange], outcome: Outcome
    ) -> tuple[JobStatus | None, list[str]]:
        """Store the exchanges and apply the outcome; returns (status, spawned child ids)."""
        now = self._clock()
        with self._session_factory.begin() as session:
            session.add_all(_log_rows(claim, exchanges, now))
            job = JobRepository(session).lock(claim.job_id)
            if job is None or job.status != JobStatus.RUNNING.value:
                return None, []
            if job.deliveries != claim.delivery:
                logger.warning("job %s: lease lost to a newer delivery, outcome dropped", job.id)
                return None, []
            if isinstance(outcome, Succeeded):
                spawned = finish_job(
                    session,
                    job,
                    JobStatus.SUCCESS,
                    now,
                    max_jobs_per_tree=self._settings.max_jobs_per_tree,
                    created_record_id=outcome.result.created_record_id,
                    children=outcome.children,
                )
                return JobStatus(job.status), [child.id for child in spawned]
            self._apply_failure(session, job, outcome.error, now)
            return JobStatus(job.status), []

    def _apply_failure(self, session: Session, job: Job, error: PmsError, now: datetime) -> None:
        if isinstance(error, PmsThrottled):
            # The PMS's back-pressure is not the job's fault: no attempt is burned.
            job.attempts -= 1
            self._defer(job, now, error.retry_after_s or 0.0, error.message)
        elif error.retryable and job.attempts < self._settings.max_attempts:
            delay = retry_delay_s(
                job.attempts, self._settings.retry_base_s, self._settings.retry_max_s
            )
            self._defer(job, now, delay, error.message)
        else:
            message = error.message
            if error.retryable:
                message = f"{message} (gave up after {job.attempts} attempts)"
            self._finish(session, job, JobStatus.FAILURE, now, message)
            return
        job.outcome_unknown = job.outcome_unknown or error.outcome_unknown

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


def _step_of(job: Job) -> Step:
    return Step(
        model=job.model,
        action=job.action,
        target_id=job.target_id,
        payload=dict(job.payload),
        idempotency_key=job.idempotency_key,
        outcome_unknown=job.outcome_unknown,
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

"""The admission step between the job store and the broker (DESIGN section 5).

PENDING jobs whose due time has come are moved to QUEUED and published. The dispatcher also
heals the store: RUNNING jobs whose lease expired (their worker died) go back to PENDING, and
QUEUED jobs never claimed are published again. Every move is a row-locked transition, so any
number of dispatchers (one per worker, plus the API) can run at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.enums import JobStatus
from pmsq.settings import Settings
from workers.aggregator import finish_job
from workers.publisher import AdmittedJob, Publisher
from workers.repository import JobRepository
from workers.transitions import transition

logger = logging.getLogger(__name__)

#: Most jobs one tick moves per kind of work, so a tick stays short.
BATCH = 500


class Dispatcher:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        publisher: Publisher,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._publisher = publisher
        self._settings = settings
        self._clock = clock

    def admit(self, job_ids: Iterable[str]) -> int:
        """Admit those of `job_ids` that are PENDING and due; returns how many were published."""
        ids = list(job_ids)
        if not ids:
            return 0
        now = self._clock()
        admitted: list[AdmittedJob] = []
        with self._session_factory.begin() as session:
            repo = JobRepository(session)
            for job_id in ids:
                job = repo.lock(job_id)
                if job is None or job.status != JobStatus.PENDING.value:
                    continue
                if job.due_at is not None and job.due_at > now:
                    continue
                transition(job, JobStatus.QUEUED, now)
                job.due_at = None
                admitted.append(AdmittedJob(job.id, job.integration_id, job.model, job.action))
        for job in admitted:
            self._publisher.publish(job)
        return len(admitted)

    def tick(self) -> int:
        """One pass of the loop: reclaim dead leases, re-publish lost messages, admit due jobs."""
        self.reclaim_expired_leases()
        self.republish_stale_queued()
        now = self._clock()
        with self._session_factory() as session:
            due = list(JobRepository(session).due_pending_ids(now, BATCH))
        return self.admit(due)

    def reclaim_expired_leases(self) -> int:
        now = self._clock()
        with self._session_factory() as session:
            expired = list(JobRepository(session).expired_running_ids(now, BATCH))
        reclaimed = 0
        for job_id in expired:
            with self._session_factory.begin() as session:
                repo = JobRepository(session)
                job = repo.lock(job_id)
                if job is None or job.status != JobStatus.RUNNING.value:
                    continue
                if job.lease_expires_at is None or job.lease_expires_at >= now:
                    continue
                logger.warning("job %s: lease expired, worker presumed lost", job.id)
                if job.deliveries >= self._settings.max_deliveries:
                    finish_job(
                        session,
                        job,
                        JobStatus.FAILURE,
                        now,
                        max_jobs_per_tree=self._settings.max_jobs_per_tree,
                        error=poison_message(job.deliveries),
                    )
                    continue
                transition(job, JobStatus.PENDING, now)
                job.due_at = now
                job.lease_expires_at = None
                job.outcome_unknown = True
                reclaimed += 1
        return reclaimed

    def republish_stale_queued(self) -> int:
        now = self._clock()
        before = now - timedelta(seconds=self._settings.queued_republish_s)
        republished: list[AdmittedJob] = []
        with self._session_factory.begin() as session:
            repo = JobRepository(session)
            for job_id in repo.stale_queued_ids(before, BATCH):
                job = repo.lock(job_id)
                if job is None or job.status != JobStatus.QUEUED.value:
                    continue
                job.updated_at = now
                republished.append(AdmittedJob(job.id, job.integration_id, job.model, job.action))
        for job in republished:
            self._publisher.publish(job)
        return len(republished)


def poison_message(deliveries: int) -> str:
    return (
        f"job was delivered {deliveries} times without finishing (its worker was lost each "
        "time); giving up (PMSQ_MAX_DELIVERIES)"
    )

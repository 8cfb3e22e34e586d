"""Retrying a failed write: a new root job re-runs exactly the jobs that failed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.services.integrations import owned_integration
from pmsq.errors import Conflict, NotFound
from pmsq.models.base import new_id, utcnow
from pmsq.models.enums import JobStatus, WriteStatus
from pmsq.models.job import Job
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.outcome import status_from_counts
from pmsq.workers.repository import JobRepository

#: Only these writes can be retried (Propexo's rule); anything else is a 409.
RETRYABLE = frozenset({WriteStatus.FAILURE, WriteStatus.PARTIAL_SUCCESS})


class RetryService:
    def __init__(self, session_factory: sessionmaker[Session], dispatcher: Dispatcher) -> None:
        self._session_factory = session_factory
        self._dispatcher = dispatcher

    def retry(self, account_id: str, root_job_id: str) -> str:
        """Create the retry write; returns its root job id.

        The failed jobs are copied with their original idempotency keys, so a write whose
        outcome was unknown (it may have reached the PMS) is not applied twice. Jobs that
        never ran because their parent failed come back when the parent's copy succeeds.
        """
        now = utcnow()
        with self._session_factory.begin() as session:
            repo = JobRepository(session)
            root = repo.lock(root_job_id)
            if root is None or root.account_id != account_id or not root.is_root:
                raise NotFound(f"no write with job id '{root_job_id}'")
            status = status_from_counts(
                root.tree_total, root.tree_finished, root.tree_succeeded, root.tree_failed
            )
            if status not in RETRYABLE:
                raise Conflict(
                    f"write '{root_job_id}' is {status.value}; only a FAILURE or "
                    "PARTIAL_SUCCESS write can be retried",
                    [{"field": "root_job_id", "reason": f"write status is {status.value}"}],
                )
            earlier = session.scalars(select(Job.id).where(Job.retry_of_job_id == root.id)).first()
            if earlier is not None:
                raise Conflict(
                    f"write '{root_job_id}' was already retried as '{earlier}'; "
                    "retry that write instead",
                    [{"field": "root_job_id", "reason": "already retried"}],
                )
            owned_integration(session, account_id, root.integration_id)
            failed = list(repo.failed_in_tree(root.id))
            new_root_id = new_id()
            copies = [
                _copy(job, new_root_id, None if i == 0 else new_root_id, now)
                for i, job in enumerate(failed)
            ]
            copies[0].id = new_root_id
            copies[0].retry_of_job_id = root.id
            copies[0].tree_total = len(copies)
            session.add_all(copies)
            integration_id = root.integration_id
            ids = [job.id for job in copies]
        self._dispatcher.submit(integration_id, ids)
        return new_root_id


def _copy(job: Job, root_job_id: str, parent_job_id: str | None, now: object) -> Job:
    return Job(
        id=new_id(),
        root_job_id=root_job_id,
        parent_job_id=parent_job_id,
        account_id=job.account_id,
        integration_id=job.integration_id,
        model=job.model,
        action=job.action,
        target_id=job.target_id,
        payload=dict(job.payload),
        status=JobStatus.PENDING.value,
        idempotency_key=job.idempotency_key,
        outcome_unknown=job.outcome_unknown,
        due_at=now,
        created_at=now,
        updated_at=now,
        tree_total=0,
    )

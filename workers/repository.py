"""Job-store queries the workers and the API share. All SQL of the job tree lives here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job, JobLog


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, job_id: str) -> Job | None:
        return self.session.get(Job, job_id)

    def get_for_account(self, job_id: str, account_id: str) -> Job | None:
        job = self.session.get(Job, job_id)
        return job if job is not None and job.account_id == account_id else None

    def lock(self, job_id: str) -> Job | None:
        """The job, row-locked until the transaction ends (PostgreSQL; SQLite locks the file)."""
        stmt = (
            select(Job)
            .where(Job.id == job_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).one_or_none()

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

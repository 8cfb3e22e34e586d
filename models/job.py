"""Jobs (one PMS step each, arranged in trees under a root write) and their PMS request logs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pmsq.models.base import Base, new_id, utcnow
from pmsq.models.enums import JobStatus

#: Model and action of the jobs that run syncs: a sync is a job like a write, so it is admitted
#: under the integration's concurrency cap and its page reads are paced under its request rate.
SYNC_MODEL = "sync"
SYNC_ACTION = "SYNC"


class Job(Base):
    """One step of a write. A root job's id is its write's id (`root_job_id == id`).

    The `tree_*` columns are meaningful on roots only: the aggregator keeps them up to date
    under the root's row lock as jobs of the tree finish, so a write's status is read in O(1).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_due_at", "status", "due_at"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
        Index("ix_jobs_root_status", "root_job_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    root_job_id: Mapped[str] = mapped_column(String(36))
    parent_job_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    #: The failed write this root re-runs (`POST retry-write`), if any.
    retry_of_job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"), index=True)
    model: Mapped[str] = mapped_column(String(60))
    #: CREATE, UPDATE, or a workflow step name such as `add_contact`.
    action: Mapped[str] = mapped_column(String(60))
    #: PMS id of the record an UPDATE targets.
    target_id: Mapped[str | None] = mapped_column(String(200), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(10), default=JobStatus.PENDING.value)
    #: PMS attempts made (a 429 does not count).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Times a worker claimed the job (monotonic: the fencing token of a claim).
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    #: Claims in a row whose worker never recorded an outcome (it was lost); past
    #: PMSQ_MAX_DELIVERIES the job is a poison message and fails.
    unrecorded_claims: Mapped[int] = mapped_column(Integer, default=0)
    #: Earliest admission time of a PENDING job.
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    #: A RUNNING job whose lease has passed is presumed orphaned and handed out again.
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The outcome of the last attempt that had an unknown result (timeout, crash): the next
    #: attempt must not write twice.
    outcome_unknown: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_record_id: Mapped[str | None] = mapped_column(String(200), default=None)
    #: Sent to the PMS where the vendor supports one, so a redelivered job never writes twice.
    idempotency_key: Mapped[str] = mapped_column(String(64), default=new_id)
    #: Position of this job in its tree's finishing order (1-based), set when it ends.
    finish_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    tree_total: Mapped[int] = mapped_column(Integer, default=1)
    tree_finished: Mapped[int] = mapped_column(Integer, default=0)
    tree_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    tree_failed: Mapped[int] = mapped_column(Integer, default=0)
    #: The first record id created anywhere in the tree, in the order creations were recorded.
    tree_created_record_id: Mapped[str | None] = mapped_column(String(200), default=None)
    #: When the last job of the tree finished (its write status is final from then on); set on
    #: roots only. Indexed: retention reads the trees to purge, oldest first, from it.
    tree_finished_at: Mapped[datetime | None] = mapped_column(default=None, index=True)

    @property
    def is_root(self) -> bool:
        return self.root_job_id == self.id


class JobLog(Base):
    """One PMS request and its response, as sent and received, secrets redacted."""

    __tablename__ = "job_logs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(Text)
    request_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_body: Mapped[str | None] = mapped_column(Text, default=None)
    response_status: Mapped[int | None] = mapped_column(Integer, default=None)
    response_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    response_body: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

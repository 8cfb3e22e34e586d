"""What a job's Celery task tells Celery, and so Flower, about the run it just made.

The job store is the source of truth and the task's state only a view of it for operators, but
a view that must not lie: a task whose job failed shows as failed, with the job's error.

- The job ended FAILURE: the task raises `JobFailed` with the job's error, after the outcome
  is committed. Jobs are acked late with Celery's `task_acks_on_failure_or_timeout` (on by
  default), so the message is acked, never redelivered, and the task is FAILURE in Flower.
- The job went back to PENDING for another attempt (a 5xx, a timeout, a 429): the task raises
  Celery's `Retry`, but nothing re-sends the task: the dispatcher admits the job again when it is
  due, as a new task. Celery acks a late-acked task's message on `Retry` and sends a
  `task-retried` event, so Flower shows this run as RETRY with the attempt's error.
- Anything else (success, a duplicate message dropped, a claim that lost its lease): the task
  succeeds with the job's status (or None) as its result.
"""

from __future__ import annotations

from datetime import datetime

from celery.exceptions import Retry
from sqlalchemy.orm import Session, sessionmaker

from pmsq.errors import JobFailed, JobRetrying
from pmsq.models.enums import JobStatus
from pmsq.workers.repository import JobRepository

#: Said in place of the job's error when the job store has none (or lost the job).
NO_ERROR = "no error recorded"


def task_result(
    session_factory: sessionmaker[Session], job_id: str, status: JobStatus | None
) -> str | None:
    """The task's result for a run that left the job in `status`; raises `JobFailed` or
    `Retry` for a job that failed or will be retried (see the module's docstring)."""
    if status == JobStatus.FAILURE:
        raise JobFailed(_error(session_factory, job_id)[0])
    if status == JobStatus.PENDING:
        error, due_at = _error(session_factory, job_id)
        raise Retry(f"job {job_id} will be retried: {error}", JobRetrying(error), due_at)
    return status.value if status is not None else None


def _error(session_factory: sessionmaker[Session], job_id: str) -> tuple[str, datetime | None]:
    """The job's recorded error and its due time, read back from the job store."""
    with session_factory() as session:
        job = JobRepository(session).get(job_id)
        if job is None:
            return NO_ERROR, None
        return job.error or NO_ERROR, job.due_at

"""The job state machine. Every status change goes through `transition`, which refuses the
moves the design forbids, so no code path can, say, resurrect a finished job.
"""

from __future__ import annotations

from datetime import datetime

from pmsq.errors import IllegalTransition
from pmsq.models.enums import JobStatus
from pmsq.models.job import Job

P, Q, R, S, F = (
    JobStatus.PENDING,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCESS,
    JobStatus.FAILURE,
)

#: Allowed moves. PENDING -> FAILURE covers a tree limit breach before admission; QUEUED ->
#: PENDING an admission handed back; QUEUED -> FAILURE a poison message; RUNNING -> PENDING a
#: retryable failure (with a due time) or an expired lease.
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    P: frozenset({Q, F}),
    Q: frozenset({R, P, F}),
    R: frozenset({S, F, P}),
    S: frozenset(),
    F: frozenset(),
}


def transition(job: Job, new: JobStatus, now: datetime) -> None:
    """Move `job` to `new`, stamping timestamps; IllegalTransition if the move is forbidden."""
    current = JobStatus(job.status)
    if new not in ALLOWED[current]:
        raise IllegalTransition(f"job {job.id}: {current.value} -> {new.value} is not allowed")
    job.status = new.value
    job.updated_at = now
    if new == R:
        job.started_at = now
    if new in (S, F):
        job.finished_at = now
        job.lease_expires_at = None
        job.due_at = None


def requeue(job: Job, now: datetime, due_at: datetime | None = None) -> None:
    """Back to PENDING, due at `due_at` (now by default), holding no lease: the one way a job
    waits again, whether its admission was handed back, its attempt is to be retried, or its
    worker was lost."""
    transition(job, P, now)
    job.due_at = now if due_at is None else due_at
    job.lease_expires_at = None

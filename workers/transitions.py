"""The job state machine. Every status change goes through `transition`, which refuses the
moves the design forbids, so no code path can, say, resurrect a finished job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


def moved(job_id: str, current: JobStatus, new: JobStatus, now: datetime) -> dict[str, Any]:
    """The columns (name -> value) a job `current` -> `new` takes; IllegalTransition if the
    move is forbidden. `transition` applies them to a loaded job; a statement that moves a job
    without loading it sets them, guarded on `current`."""
    if new not in ALLOWED[current]:
        raise IllegalTransition(f"job {job_id}: {current.value} -> {new.value} is not allowed")
    values: dict[str, Any] = {"status": new.value, "updated_at": now}
    if new == R:
        values["started_at"] = now
    if new in (S, F):
        values.update(finished_at=now, lease_expires_at=None, due_at=None)
    return values


def requeued(
    job_id: str, current: JobStatus, now: datetime, due_at: datetime | None = None
) -> dict[str, Any]:
    """The columns of `requeue`'s move (as `moved`'s)."""
    values = moved(job_id, current, P, now)
    values.update(due_at=now if due_at is None else due_at, lease_expires_at=None)
    return values


def transition(job: Job, new: JobStatus, now: datetime) -> None:
    """Move `job` to `new`, stamping timestamps; IllegalTransition if the move is forbidden."""
    _apply(job, moved(job.id, JobStatus(job.status), new, now))


def requeue(job: Job, now: datetime, due_at: datetime | None = None) -> None:
    """Back to PENDING, due at `due_at` (now by default), holding no lease: the one way a job
    waits again, whether its admission was handed back, its attempt is to be retried, or its
    worker was lost."""
    _apply(job, requeued(job.id, JobStatus(job.status), now, due_at))


def _apply(job: Job, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(job, name, value)

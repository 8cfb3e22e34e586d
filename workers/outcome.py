"""A write's outcome, read from its root's counters: status, errors and created record id.

The aggregator keeps the counters (`pmsq.workers.aggregator`); the API, webhooks and the CLI
read them here, in O(1) for the status and O(failed jobs) for the errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from pmsq.models.enums import WriteStatus
from pmsq.models.job import Job
from pmsq.workers.repository import JobRepository


@dataclass(frozen=True)
class WriteOutcome:
    write_status: WriteStatus
    errors: list[str]
    created_record_id: str | None


def status_from_counts(total: int, finished: int, succeeded: int, failed: int) -> WriteStatus:
    """PENDING while any job is unfinished; then SUCCESS, FAILURE or PARTIAL_SUCCESS."""
    if finished < total:
        return WriteStatus.PENDING
    if failed == 0:
        return WriteStatus.SUCCESS
    if succeeded == 0:
        return WriteStatus.FAILURE
    return WriteStatus.PARTIAL_SUCCESS


def write_outcome(session: Session, root: Job) -> WriteOutcome:
    status = status_from_counts(
        root.tree_total, root.tree_finished, root.tree_succeeded, root.tree_failed
    )
    errors = [
        job.error or "unknown error" for job in JobRepository(session).failed_in_tree(root.id)
    ]
    return WriteOutcome(status, errors, root.tree_created_record_id)

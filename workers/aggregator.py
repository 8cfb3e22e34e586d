"""The result aggregator: a write's status, errors and created record id.

Counters on the root row are updated under the root's row lock as each job of the tree
finishes, in the same transaction that records the job's outcome and inserts its children:
O(1) per finished job, never a re-read of the tree. Reading a status is O(1) too; the error
list is O(failed jobs).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from pmsq.errors import IllegalTransition
from pmsq.models.base import new_id
from pmsq.models.enums import JobStatus
from pmsq.models.job import SYNC_ACTION, Job
from pmsq.pms.connector import ChildSpec
from pmsq.workers.repository import JobRepository
from pmsq.workers.sync_runner import mark_failed
from pmsq.workers.transitions import transition
from pmsq.workers.webhooks import events as webhook_events
from pmsq.workers.webhooks.subscriptions import Subscription


def finish_job(
    session: Session,
    job: Job,
    status: JobStatus,
    now: datetime,
    *,
    max_jobs_per_tree: int,
    error: str | None = None,
    created_record_id: str | None = None,
    children: Sequence[ChildSpec] = (),
    subscribed: Sequence[Subscription] | None = None,
) -> list[Job]:
    """Record `job`'s final outcome, update its root's counters and insert its children.

    Must run inside the caller's transaction, which it leaves open. Spawning past
    `max_jobs_per_tree` fails the job with an error naming the limit instead of spawning.
    Returns the child jobs inserted (PENDING, due now), for the caller to dispatch after commit.
    `subscribed`: the account's webhook endpoints as of this transaction, if the caller has
    them (`pmsq.workers.webhooks.subscriptions`); the outbox reads them otherwise.
    """
    if status not in (JobStatus.SUCCESS, JobStatus.FAILURE):
        raise IllegalTransition(f"finish_job needs a final status, not {status.value}")
    repo = JobRepository(session)
    root = repo.lock(job.root_job_id)
    if root is None:
        raise IllegalTransition(f"job {job.id} has no root {job.root_job_id}")
    if root.id == job.id:
        job = root
    if children and root.tree_total + len(children) > max_jobs_per_tree:
        status = JobStatus.FAILURE
        error = (
            f"spawning {len(children)} child jobs would exceed the limit of "
            f"{max_jobs_per_tree} jobs per write (PMSQ_MAX_JOBS_PER_TREE)"
        )
        children = ()
    transition(job, status, now)
    job.error = error if status == JobStatus.FAILURE else None
    job.created_record_id = created_record_id
    root.tree_finished += 1
    job.finish_seq = root.tree_finished
    if status == JobStatus.SUCCESS:
        root.tree_succeeded += 1
    else:
        root.tree_failed += 1
    if created_record_id is not None and root.tree_created_record_id is None:
        root.tree_created_record_id = created_record_id
    spawned = [
        Job(
            id=new_id(),
            idempotency_key=new_id(),
            root_job_id=root.id,
            parent_job_id=job.id,
            account_id=job.account_id,
            integration_id=job.integration_id,
            model=spec.model,
            action=spec.action,
            target_id=spec.target_id,
            payload=spec.payload,
            status=JobStatus.PENDING.value,
            due_at=now,
            created_at=now,
            updated_at=now,
            tree_total=0,
        )
        for spec in children
    ]
    root.tree_total += len(spawned)
    if root.tree_finished >= root.tree_total:
        # The whole tree is final: its write status is settled, and retention counts from now.
        root.tree_finished_at = now
    session.add_all(spawned)
    execution_id = job.payload.get("execution_id") if job.action == SYNC_ACTION else None
    if execution_id is not None and status == JobStatus.FAILURE:
        # Whatever ended the sync job (the PMS, giving up, a poison message), its execution
        # ends with it, or it would hold off its integration's syncs for good.
        mark_failed(session, str(execution_id), error or "", now)
    # Outbox: JOB_FAILURE / WRITE_OPERATION_* rows commit (or roll back) with this outcome.
    webhook_events.on_job_finished(session, job, root, now, subscribed)
    return spawned

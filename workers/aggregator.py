"""The result aggregator: a write's status, errors and created record id.

Counters on the root row are updated under the root's row lock as each job of the tree
finishes, in the same transaction that records the job's outcome and inserts its children:
O(1) per finished job, never a re-read of the tree. Reading a status is O(1) too; the error
list is O(failed jobs).

The rules live in `ending`, a function of what they read (the job's status and its root's
counters). `finish_job` applies them to loaded, row-locked jobs; `finish_running_root`, the
worker's commonest case (a root job that spawns nothing), applies them in one UPDATE guarded
on exactly what they read, so either path gives the same row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from pmsq.errors import IllegalTransition
from pmsq.models.base import new_id
from pmsq.models.enums import JobStatus
from pmsq.models.job import SYNC_ACTION, Job
from pmsq.pms.connector import ChildSpec
from pmsq.workers.repository import JobRepository, move_job_if
from pmsq.workers.sync_runner import mark_failed
from pmsq.workers.transitions import moved
from pmsq.workers.webhooks import events as webhook_events
from pmsq.workers.webhooks.subscriptions import Subscription


@dataclass(frozen=True)
class TreeCounts:
    """What finishing a job reads of its root. The defaults are a tree none of whose jobs
    has finished yet: its root alone."""

    total: int = 1
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    created_record_id: str | None = None

    @classmethod
    def of(cls, root: Job) -> TreeCounts:
        return cls(
            root.tree_total,
            root.tree_finished,
            root.tree_succeeded,
            root.tree_failed,
            root.tree_created_record_id,
        )

    def columns(self) -> dict[str, Any]:
        """The root's columns that hold these counts."""
        return {
            "tree_total": self.total,
            "tree_finished": self.finished,
            "tree_succeeded": self.succeeded,
            "tree_failed": self.failed,
            "tree_created_record_id": self.created_record_id,
        }


@dataclass(frozen=True)
class Ending:
    """What finishing a job does: its final status and error, the children it spawns, and
    the columns (name -> value) its row and its root's row take."""

    status: JobStatus
    error: str | None
    children: Sequence[ChildSpec]
    job: dict[str, Any]
    root: dict[str, Any]


def ending(
    job_id: str,
    current: JobStatus,
    counts: TreeCounts,
    status: JobStatus,
    now: datetime,
    *,
    max_jobs_per_tree: int,
    error: str | None = None,
    created_record_id: str | None = None,
    children: Sequence[ChildSpec] = (),
) -> Ending:
    """The aggregator's rules: how job `job_id`, now `current`, ends `status` in a tree that
    counts `counts`. Spawning past `max_jobs_per_tree` fails the job with an error naming
    the limit instead of spawning. Raises IllegalTransition for a move the state machine
    forbids or a status that is not final."""
    if status not in (JobStatus.SUCCESS, JobStatus.FAILURE):
        raise IllegalTransition(f"finish_job needs a final status, not {status.value}")
    if children and counts.total + len(children) > max_jobs_per_tree:
        status = JobStatus.FAILURE
        error = (
            f"spawning {len(children)} child jobs would exceed the limit of "
            f"{max_jobs_per_tree} jobs per write (PMSQ_MAX_JOBS_PER_TREE)"
        )
        children = ()
    error = error if status == JobStatus.FAILURE else None
    finished = counts.finished + 1
    total = counts.total + len(children)
    job = moved(job_id, current, status, now)
    job.update(error=error, created_record_id=created_record_id, finish_seq=finished)
    root: dict[str, Any] = {
        "tree_total": total,
        "tree_finished": finished,
        "tree_succeeded": counts.succeeded + (status == JobStatus.SUCCESS),
        "tree_failed": counts.failed + (status == JobStatus.FAILURE),
        "tree_created_record_id": (
            created_record_id if counts.created_record_id is None else counts.created_record_id
        ),
    }
    if finished >= total:
        # The whole tree is final: its write status is settled, and retention counts from now.
        root["tree_finished_at"] = now
    return Ending(status, error, children, job, root)


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
    """Record `job`'s final outcome, update its root's counters and insert its children
    (`ending`'s rules).

    Must run inside the caller's transaction, which it leaves open. Returns the child jobs
    inserted (PENDING, due now), for the caller to dispatch after commit.
    `subscribed`: the account's webhook endpoints as of this transaction, if the caller has
    them (`pmsq.workers.webhooks.subscriptions`); the outbox reads them otherwise.
    """
    root = JobRepository(session).lock(job.root_job_id)
    if root is None:
        raise IllegalTransition(f"job {job.id} has no root {job.root_job_id}")
    if root.id == job.id:
        job = root
    end = ending(
        job.id,
        JobStatus(job.status),
        TreeCounts.of(root),
        status,
        now,
        max_jobs_per_tree=max_jobs_per_tree,
        error=error,
        created_record_id=created_record_id,
        children=children,
    )
    for target, values in ((job, end.job), (root, end.root)):
        for name, value in values.items():
            setattr(target, name, value)
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
        for spec in end.children
    ]
    session.add_all(spawned)
    _announce(session, job, root, now, subscribed)
    return spawned


@dataclass(frozen=True)
class FinishedRoot:
    """What `finish_running_root` did."""

    status: JobStatus
    #: Whether the write is complete (its root's tree all final).
    complete: bool
    #: When the write was accepted (the root's `created_at`).
    accepted_at: datetime
    #: The integration's `updated_at` as the UPDATE read it: its enum mappings' version.
    integration_version: datetime | None


def finish_running_root(
    connection: Connection,
    session: Session,
    job_id: str,
    status: JobStatus,
    now: datetime,
    *,
    expected: Mapping[str, Any],
    also: Mapping[str, Any],
    listeners: Callable[[str, int | None], Sequence[Subscription]],
    error: str | None = None,
    created_record_id: str | None = None,
) -> FinishedRoot | None:
    """`finish_job` for a RUNNING root job that spawns nothing, none of whose tree has
    finished (its counts are `TreeCounts()`): `ending`'s columns, and `also`'s, in one UPDATE
    guarded on what the rules read (RUNNING, those counts) and on `expected` (the caller's
    fencing: the claim's delivery, and what its choice of `status` read). None, nothing
    changed, when any of it does not hold: the caller takes `finish_job`'s path (lock, read,
    apply), which finds out why.

    `listeners(account_id, webhooks_version)`: the account's webhook endpoints as of the
    version the UPDATE read; the outbox's rows (and a sync job's failed execution) are written
    as `finish_job` writes them, through `session`, a Session on `connection`'s transaction
    that is used only then."""
    counts = TreeCounts()
    end = ending(
        job_id,
        JobStatus.RUNNING,
        counts,
        status,
        now,
        max_jobs_per_tree=counts.total,
        error=error,
        created_record_id=created_record_id,
    )
    # A root (its counters are on its own row), RUNNING, its tree fresh: what `ending` read.
    guard = {
        **expected,
        "root_job_id": job_id,
        "status": JobStatus.RUNNING.value,
        **counts.columns(),
    }
    done = move_job_if(connection, job_id, guard, {**end.job, **end.root, **also})
    if done is None:
        return None
    subscribed = listeners(done.account_id, done.webhooks_version)
    if subscribed or (done.action == SYNC_ACTION and end.status == JobStatus.FAILURE):
        # Someone listens, or a sync's execution ends: as finish_job, on the job as it now is.
        job = session.get(Job, job_id, populate_existing=True)
        assert job is not None  # updated a moment ago in this transaction
        _announce(session, job, job, now, subscribed)
    return FinishedRoot(
        end.status, "tree_finished_at" in end.root, done.created_at, done.integration_version
    )


def _announce(
    session: Session,
    job: Job,
    root: Job,
    now: datetime,
    subscribed: Sequence[Subscription] | None,
) -> None:
    """What a finished job tells others, in its transaction: a failed sync job's execution
    ends, and the outbox gets its webhook rows."""
    execution_id = job.payload.get("execution_id") if job.action == SYNC_ACTION else None
    if execution_id is not None and job.status == JobStatus.FAILURE.value:
        # Whatever ended the sync job (the PMS, giving up, a poison message), its execution
        # ends with it, or it would hold off its integration's syncs for good.
        mark_failed(session, str(execution_id), job.error or "", now)
    # Outbox: JOB_FAILURE / WRITE_OPERATION_* rows commit (or roll back) with this outcome.
    webhook_events.on_job_finished(session, job, root, now, subscribed)

"""Starting a sync: an execution row plus the job that runs it under flow control.

A sync is a job like a write (model `sync`, action `SYNC`), so it is admitted under the
integration's concurrency cap and every page it reads is paced under its request rate, and
each PMS request is in the job log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmsq.errors import Conflict, ValidationFailed
from pmsq.models.base import new_id
from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import SYNC_ACTION, SYNC_MODEL, Job
from pmsq.models.sync import UNFINISHED_SYNC, SyncExecution, SyncStatus, SyncType
from pmsq.pms.registry import profile_for


def backsync_running(session: Session, integration_id: str) -> bool:
    return integration_id in backsyncs_running(session, [integration_id])


def backsyncs_running(session: Session, integration_ids: Sequence[str]) -> set[str]:
    """Which of the integrations an unfinished backsync holds (one query for them all)."""
    if not integration_ids:
        return set()
    rows = session.scalars(
        select(SyncExecution.integration_id).where(
            SyncExecution.integration_id.in_(list(integration_ids)),
            SyncExecution.type == SyncType.BACKSYNC.value,
            SyncExecution.status.in_([s.value for s in UNFINISHED_SYNC]),
        )
    ).all()
    return set(rows)


def check_models(integration: Integration, models: Sequence[str] | None) -> list[str]:
    """The models to sync: those asked for, each one the vendor has; all of them if none."""
    profile = profile_for(integration.integration_vendor)
    if not models:
        return sorted(profile.models)
    unknown = sorted(set(models) - set(profile.models))
    if unknown:
        raise ValidationFailed(
            f"{profile.vendor} has no model(s) {', '.join(unknown)}",
            [{"field": "models_to_sync", "reason": f"unknown model {name}"} for name in unknown],
        )
    return list(dict.fromkeys(models))


def start_sync(
    session: Session,
    integration: Integration,
    sync_type: SyncType,
    now: datetime,
    *,
    models: Sequence[str] | None = None,
) -> SyncExecution:
    """Add a manual sync or backsync and its PENDING job; the caller commits, then submits
    `job_id`. Refused (Conflict) while a backsync holds the integration."""
    if backsync_running(session, integration.id):
        raise Conflict(
            "a backsync of this integration is running; other syncs wait until it ends",
            [{"field": "integration_id", "reason": "backsync in progress"}],
        )
    execution, job = build_sync(integration, sync_type, now, models=models)
    session.add(execution)
    if job is not None:
        session.add(job)
    session.flush()
    return execution


def build_sync(
    integration: Integration,
    sync_type: SyncType,
    now: datetime,
    *,
    models: Sequence[str] | None = None,
    schedule_id: str | None = None,
    scheduled_for: datetime | None = None,
    held_by_backsync: bool = False,
) -> tuple[SyncExecution, Job | None]:
    """The execution and the job that runs it, not yet added to a session.

    A scheduled sync of an integration a backsync holds is recorded as SKIPPED, with no job.
    """
    chosen = check_models(integration, models)
    execution = SyncExecution(
        id=new_id(),
        integration_id=integration.id,
        schedule_id=schedule_id,
        scheduled_for=scheduled_for,
        type=sync_type.value,
        status=SyncStatus.PENDING.value,
        models=chosen,
        errors=[],
        insert_count=0,
        update_count=0,
        delete_count=0,
        error_count=0,
        warning_count=0,
        total_count=0,
        created_at=now,
    )
    if held_by_backsync:
        execution.status = SyncStatus.SKIPPED.value
        execution.completed_at = now
        execution.errors = ["skipped: a backsync of this integration was running"]
        return execution, None
    job_id = new_id()
    execution.job_id = job_id
    job = Job(
        id=job_id,
        root_job_id=job_id,
        idempotency_key=new_id(),
        account_id=integration.account_id,
        integration_id=integration.id,
        model=SYNC_MODEL,
        action=SYNC_ACTION,
        payload={"execution_id": execution.id, "type": sync_type.value, "models": chosen},
        status=JobStatus.PENDING.value,
        due_at=now,
        created_at=now,
        updated_at=now,
    )
    return execution, job

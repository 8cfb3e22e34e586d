"""Starting a sync: an execution row plus the job that runs it under flow control.

A sync is a job like a write (model `sync`, action `SYNC`), so it is admitted under the
integration's concurrency cap and every page it reads is paced under its request rate, and
each PMS request is in the job log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from models.base import new_id
from models.enums import JobStatus
from models.integration import Integration
from models.job import Job
from models.sync import UNFINISHED_SYNC, SyncExecution, SyncStatus, SyncType
from pms.profiles import profile_for
from pmsq.errors import Conflict, ValidationFailed

SYNC_MODEL = "sync"
SYNC_ACTION = "SYNC"


def backsync_running(session: Session, integration_id: str) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    SyncExecution.integration_id == integration_id,
                    SyncExecution.type == SyncType.BACKSYNC.value,
                    SyncExecution.status.in_([s.value for s in UNFINISHED_SYNC]),
                )
            )
        )
    )


def check_models(integration: Integration, models: Sequence[str] | None) -> list[str]:
    """The models to sync: those asked for, each one the vendor has; all of them if none."""
    profile = profile_for(integration.integration_vendor)
    if not models:
        return sorted(profile.models)
    unknown = sorted(set(models) - set(profile.models))
    if unknown:
        raise ValidationFailed(
            f"{profile.vendor.value} has no model(s) {', '.join(unknown)}",
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
    schedule_id: str | None = None,
    scheduled_for: datetime | None = None,
) -> SyncExecution:
    """Add the execution and its PENDING job; the caller commits, then submits `job_id`.

    A backsync holds the integration: while one is unfinished, manual syncs and backsyncs are
    refused (Conflict) and scheduled ones are recorded as SKIPPED.
    """
    chosen = check_models(integration, models)
    execution = SyncExecution(
        id=new_id(),
        integration_id=integration.id,
        schedule_id=schedule_id,
        scheduled_for=scheduled_for,
        type=sync_type.value,
        models=chosen,
        created_at=now,
    )
    if backsync_running(session, integration.id):
        if sync_type != SyncType.SCHEDULED:
            raise Conflict(
                "a backsync of this integration is running; other syncs wait until it ends",
                [{"field": "integration_id", "reason": "backsync in progress"}],
            )
        execution.status = SyncStatus.SKIPPED.value
        execution.completed_at = now
        execution.errors = ["skipped: a backsync of this integration was running"]
        session.add(execution)
        session.flush()
        return execution
    job_id = new_id()
    execution.job_id = job_id
    session.add(execution)
    session.add(
        Job(
            id=job_id,
            root_job_id=job_id,
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
    )
    session.flush()
    return execution

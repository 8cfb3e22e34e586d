"""Syncs for the admin API: trigger manual syncs and backsyncs, schedules, status, diffs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.pagination import PageRequest, paginate, paginate_rows
from pmsq.api.services.integrations import owned_integration
from pmsq.errors import Conflict, NotFound
from pmsq.models.base import iso_z, utcnow
from pmsq.models.enums import vendor_on_wire
from pmsq.models.integration import Integration
from pmsq.models.sync import (
    UNFINISHED_SYNC,
    DataDiff,
    SyncExecution,
    SyncSchedule,
    SyncStatus,
    SyncType,
)
from pmsq.scheduler.schedules import ACTIVE
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.sync_starter import start_sync

DIFF_SORTABLE = {"created_at": DataDiff.created_at, "model": DataDiff.model}
SCHEDULE_SORTABLE = {
    "created_at": SyncSchedule.created_at,
    "updated_at": SyncSchedule.updated_at,
}


#: A sync execution's status as Polytomic spells it: a skipped run (a backsync held the
#: integration) never ran, so it reads as canceled.
POLYTOMIC_STATUS = {
    SyncStatus.PENDING: "queued",
    SyncStatus.RUNNING: "running",
    SyncStatus.SUCCESS: "completed",
    SyncStatus.FAILURE: "failed",
    SyncStatus.SKIPPED: "canceled",
}


def execution_view(execution: SyncExecution) -> dict[str, Any]:
    """A sync execution in Polytomic's shape (`GetExecutionResponseSchema`): its status in
    Polytomic's enum, `counts` with `upserts` (the records written to the cache: inserts and
    updates), `errors` as strings."""
    counts = execution.counts()
    return {
        "id": execution.id,
        "type": execution.type.lower(),
        "status": POLYTOMIC_STATUS[SyncStatus(execution.status)],
        "models": execution.models,
        "counts": {**counts, "upserts": counts["insert"] + counts["update"]},
        "errors": [str(error) for error in execution.errors],
        "created_at": iso_z(execution.created_at),
        "started_at": iso_z(execution.started_at),
        "completed_at": iso_z(execution.completed_at),
        "job_id": execution.job_id,
    }


def schedule_view(schedule: SyncSchedule, integration: Integration) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "integration_id": schedule.integration_id,
        "created_at": iso_z(schedule.created_at),
        "updated_at": iso_z(schedule.updated_at),
        "job_type": schedule.job_type,
        # Propexo's statuses: a paused schedule (the integration is not live) is INACTIVE.
        "status": "ACTIVE" if schedule.status == ACTIVE else "INACTIVE",
        "last_run": iso_z(schedule.last_run_at),
        "sync_frequency": integration.sync_frequency,
        "sync_cadence": integration.sync_cadence,
        "use_custom_sync_schedule": integration.use_custom_sync_schedule,
        "parameters": schedule.parameters,
        "next_execution_time": iso_z(schedule.next_run_at),
    }


def diff_view(diff: DataDiff, vendor: str, job_id: str | None) -> dict[str, Any]:
    """A data diff in Propexo's fields, with pmsq's `execution_id`."""
    return {
        "id": diff.id,
        "model": diff.model,
        "model_record_id": diff.pms_id,
        "event_type": diff.diff_type,
        "data_diff": diff.changes,
        "created_at": iso_z(diff.created_at),
        "job_id": job_id,
        "integration_id": diff.integration_id,
        "integration_vendor": vendor_on_wire(vendor),
        "execution_id": diff.execution_id,
    }


class SyncService:
    def __init__(self, session_factory: sessionmaker[Session], dispatcher: Dispatcher) -> None:
        self._session_factory = session_factory
        self._dispatcher = dispatcher

    def trigger(
        self,
        account_id: str,
        integration_id: str,
        sync_type: SyncType,
        models: Sequence[str] | None,
        sync_config_id: str | None = None,
    ) -> dict[str, Any]:
        now = utcnow()
        with self._session_factory.begin() as session:
            integration = owned_integration(session, account_id, integration_id)
            if sync_type is SyncType.MANUAL and not integration.allow_manual_syncs:
                raise Conflict(
                    f"integration '{integration_id}' does not allow manual syncs",
                    [{"field": "allow_manual_syncs", "reason": "false on this integration"}],
                )
            execution = start_sync(session, integration, sync_type, now, models=models)
            view = execution_view(execution)
        if execution.job_id is not None:
            self._dispatcher.submit(integration_id, [execution.job_id])
        return {"success": True, "execution": view, "sync_config_id": sync_config_id}

    def schedules(self, account_id: str, integration_id: str, page: PageRequest) -> dict[str, Any]:
        with self._session_factory() as session:
            integration = owned_integration(session, account_id, integration_id)
            stmt = select(SyncSchedule).where(SyncSchedule.integration_id == integration_id)
            return paginate(
                session,
                stmt,
                page,
                SCHEDULE_SORTABLE,
                "created_at:desc",
                lambda row: schedule_view(row, integration),
            )

    def schedule(self, account_id: str, integration_id: str, schedule_id: str) -> dict[str, Any]:
        with self._session_factory() as session:
            integration = owned_integration(session, account_id, integration_id)
            schedule = session.get(SyncSchedule, schedule_id)
            if schedule is None or schedule.integration_id != integration_id:
                raise NotFound(f"no job schedule with id '{schedule_id}'")
            return schedule_view(schedule, integration)

    def status(self, account_id: str, integration_id: str) -> dict[str, Any]:
        """Seed 002's sync status: the running execution, the last finished one, the next."""
        with self._session_factory() as session:
            owned_integration(session, account_id, integration_id)
            latest = select(SyncExecution).where(SyncExecution.integration_id == integration_id)
            unfinished = [s.value for s in UNFINISHED_SYNC]
            current = session.scalars(
                latest.where(SyncExecution.status.in_(unfinished))
                .order_by(SyncExecution.created_at.desc(), SyncExecution.id)
                .limit(1)
            ).first()
            last = session.scalars(
                latest.where(SyncExecution.status.not_in(unfinished))
                .order_by(SyncExecution.completed_at.desc(), SyncExecution.id)
                .limit(1)
            ).first()
            next_run = session.scalar(
                select(SyncSchedule.next_run_at).where(
                    SyncSchedule.integration_id == integration_id
                )
            )
            return {
                "current_execution": execution_view(current) if current else None,
                "last_execution": execution_view(last) if last else None,
                "next_execution_time": iso_z(next_run),
            }

    def diffs(
        self,
        account_id: str,
        page: PageRequest,
        *,
        integration_id: str | None,
        vendor: str | None,
        model: str | None,
        event_type: str | None,
        before: datetime | None,
        after: datetime | None,
    ) -> dict[str, Any]:
        """The account's data diffs, newest first; `before` and `after` bound `created_at`
        (exclusive)."""
        stmt = (
            select(DataDiff, Integration.integration_vendor, SyncExecution.job_id)
            .join(Integration, Integration.id == DataDiff.integration_id)
            .join(SyncExecution, SyncExecution.id == DataDiff.execution_id)
            .where(Integration.account_id == account_id)
        )
        if integration_id is not None:
            stmt = stmt.where(DataDiff.integration_id == integration_id)
        if vendor is not None:
            stmt = stmt.where(Integration.integration_vendor == vendor)
        if model is not None:
            stmt = stmt.where(DataDiff.model == model)
        if event_type is not None:
            stmt = stmt.where(DataDiff.diff_type == event_type)
        if before is not None:
            stmt = stmt.where(DataDiff.created_at < before)
        if after is not None:
            stmt = stmt.where(DataDiff.created_at > after)
        with self._session_factory() as session:
            return paginate_rows(
                session,
                stmt,
                page,
                DIFF_SORTABLE,
                "created_at:desc",
                lambda row: diff_view(row[0], row[1], row[2]),
            )

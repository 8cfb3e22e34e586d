"""Syncs for the admin API: trigger manual syncs and backsyncs, schedules, status, diffs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.pagination import PageRequest, paginate
from pmsq.api.services.integrations import owned_integration
from pmsq.errors import NotFound
from pmsq.models.base import utcnow
from pmsq.models.integration import Integration
from pmsq.models.sync import UNFINISHED_SYNC, DataDiff, SyncExecution, SyncSchedule, SyncType
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.sync_starter import start_sync

DIFF_SORTABLE = {"created_at": DataDiff.created_at, "model": DataDiff.model}
SCHEDULE_SORTABLE = {"created_at": SyncSchedule.created_at}


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def execution_view(execution: SyncExecution) -> dict[str, Any]:
    """Seed 002's execution shape."""
    return {
        "id": execution.id,
        "type": execution.type.lower(),
        "status": execution.status.lower(),
        "models": execution.models,
        "counts": execution.counts(),
        "errors": execution.errors,
        "created_at": iso(execution.created_at),
        "started_at": iso(execution.started_at),
        "completed_at": iso(execution.completed_at),
        "job_id": execution.job_id,
    }


def schedule_view(schedule: SyncSchedule, integration: Integration) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "job_type": schedule.job_type,
        "status": schedule.status,
        "last_run": iso(schedule.last_run_at),
        "sync_frequency": integration.sync_frequency,
        "sync_cadence": integration.sync_cadence,
        "use_custom_sync_schedule": integration.use_custom_sync_schedule,
        "parameters": schedule.parameters,
        "next_execution_time": iso(schedule.next_run_at),
    }


def diff_view(diff: DataDiff) -> dict[str, Any]:
    return {
        "id": diff.id,
        "integration_id": diff.integration_id,
        "execution_id": diff.execution_id,
        "model": diff.model,
        "record_id": diff.pms_id,
        "diff_type": diff.diff_type,
        "changes": diff.changes,
        "created_at": iso(diff.created_at),
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
    ) -> dict[str, Any]:
        now = utcnow()
        with self._session_factory.begin() as session:
            integration = owned_integration(session, account_id, integration_id)
            execution = start_sync(session, integration, sync_type, now, models=models)
            view = execution_view(execution)
        if execution.job_id is not None:
            self._dispatcher.submit(integration_id, [execution.job_id])
        return {"success": True, "execution": view}

    def schedules(self, account_id: str, integration_id: str, page: PageRequest) -> dict[str, Any]:
        with self._session_factory() as session:
            integration = owned_integration(session, account_id, integration_id)
            stmt = select(SyncSchedule).where(SyncSchedule.integration_id == integration_id)
            return paginate(
                session,
                stmt,
                page,
                SCHEDULE_SORTABLE,
                "created_at:asc",
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
                "next_execution_time": iso(next_run),
            }

    def diffs(
        self,
        account_id: str,
        page: PageRequest,
        *,
        integration_id: str | None,
        model: str | None,
        diff_type: str | None,
    ) -> dict[str, Any]:
        stmt = (
            select(DataDiff)
            .join(Integration, Integration.id == DataDiff.integration_id)
            .where(Integration.account_id == account_id)
        )
        if integration_id is not None:
            stmt = stmt.where(DataDiff.integration_id == integration_id)
        if model is not None:
            stmt = stmt.where(DataDiff.model == model)
        if diff_type is not None:
            stmt = stmt.where(DataDiff.diff_type == diff_type)
        with self._session_factory() as session:
            return paginate(session, stmt, page, DIFF_SORTABLE, "created_at:desc", diff_view)

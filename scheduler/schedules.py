"""Keeps each integration's SyncSchedule in step with its settings.

Called in the same transaction that changes the integration; the session is marked so that
its commit signals beat (`pmsq.scheduler.changes`), which then re-reads the next due time on
its very next tick, with no restart and no polling of integration rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmsq.models.integration import Integration
from pmsq.models.sync import SyncSchedule
from pmsq.scheduler.cadence import next_sync_time
from pmsq.scheduler.changes import mark_changed

ACTIVE = "ACTIVE"
PAUSED = "PAUSED"
#: Integration fields that decide the cadence; changing one restarts the default cadence.
CADENCE_FIELDS = (
    "sync_frequency",
    "sync_cadence",
    "use_custom_sync_schedule",
    "custom_sync_schedule",
)


def cadence_signature(integration: Integration) -> dict[str, object]:
    return {name: getattr(integration, name) for name in CADENCE_FIELDS}


def refresh_schedule(session: Session, integration: Integration, now: datetime) -> SyncSchedule:
    """Create or update the integration's schedule and recompute its next due time."""
    schedule = session.scalars(
        select(SyncSchedule).where(SyncSchedule.integration_id == integration.id)
    ).one_or_none()
    signature = cadence_signature(integration)
    if schedule is None:
        schedule = SyncSchedule(integration_id=integration.id, anchor_at=now, created_at=now)
        session.add(schedule)
    elif schedule.parameters.get("cadence") != signature:
        schedule.anchor_at = now
    schedule.parameters = {"cadence": signature}
    live = integration.active and not integration.is_archived and integration.deleted_at is None
    schedule.status = ACTIVE if live else PAUSED
    schedule.next_run_at = next_due(integration, schedule, now) if live else None
    schedule.updated_at = now
    mark_changed(session)
    return schedule


def next_due(integration: Integration, schedule: SyncSchedule, after: datetime) -> datetime | None:
    return next_sync_time(
        sync_frequency=integration.sync_frequency,
        sync_cadence=integration.sync_cadence,
        use_custom_sync_schedule=integration.use_custom_sync_schedule,
        custom_sync_schedule=integration.custom_sync_schedule,
        anchor=schedule.anchor_at,
        after=after,
    )

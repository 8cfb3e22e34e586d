"""Firing due syncs: read the schedules whose next run has come (an indexed range scan), start
each sync once (the fire key), and move each schedule to its next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.integration import Integration
from models.sync import SyncSchedule, SyncStatus, SyncType
from scheduler.schedules import ACTIVE, next_due
from scheduler.starter import start_sync
from workers.dispatch import Dispatcher

logger = logging.getLogger(__name__)

#: Most schedules one tick fires; the rest wait for the next tick (which comes at once).
FIRE_BATCH = 500


@dataclass(frozen=True)
class TickResult:
    fired: int
    skipped: int
    #: When the earliest schedule is next due (None: nothing scheduled).
    next_due_at: datetime | None
    #: True when more were due than one batch holds.
    more_due: bool


class SyncFirer:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        dispatcher: Dispatcher,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._dispatcher = dispatcher
        self._clock = clock

    def fire_due(self) -> TickResult:
        now = self._clock()
        started: list[tuple[str, str]] = []
        skipped = 0
        with self._session_factory.begin() as session:
            due = session.scalars(
                select(SyncSchedule)
                .where(SyncSchedule.status == ACTIVE, SyncSchedule.next_run_at <= now)
                .order_by(SyncSchedule.next_run_at)
                .limit(FIRE_BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            for schedule in due:
                job = self._fire(session, schedule, now)
                if job is None:
                    skipped += 1
                else:
                    started.append(job)
        for integration_id, job_id in started:
            self._dispatcher.submit(integration_id, [job_id])
        with self._session_factory() as session:
            next_due_at = session.scalar(
                select(SyncSchedule.next_run_at)
                .where(SyncSchedule.status == ACTIVE, SyncSchedule.next_run_at.is_not(None))
                .order_by(SyncSchedule.next_run_at)
                .limit(1)
            )
        return TickResult(len(started), skipped, next_due_at, len(due) == FIRE_BATCH)

    def _fire(
        self, session: Session, schedule: SyncSchedule, now: datetime
    ) -> tuple[str, str] | None:
        """Start the schedule's sync once; returns (integration_id, job_id) if a job started."""
        scheduled_for = schedule.next_run_at
        integration = session.get(Integration, schedule.integration_id)
        assert integration is not None and scheduled_for is not None
        schedule.last_run_at = scheduled_for
        # Missed runs (beat was down) collapse into this one: the next run is after now.
        schedule.next_run_at = next_due(integration, schedule, max(now, scheduled_for))
        try:
            with session.begin_nested():
                execution = start_sync(
                    session,
                    integration,
                    SyncType.SCHEDULED,
                    now,
                    schedule_id=schedule.id,
                    scheduled_for=scheduled_for,
                )
        except IntegrityError:
            logger.info("sync of %s at %s was already fired", integration.id, scheduled_for)
            return None
        if execution.status == SyncStatus.SKIPPED.value or execution.job_id is None:
            return None
        return integration.id, execution.job_id

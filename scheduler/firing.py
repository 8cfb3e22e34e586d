"""Firing due syncs, set-based: one indexed range scan for the due schedules (with their
integrations), one query for backsyncs in progress, one multi-row insert of executions and jobs
(the fire key keeps each scheduled time unique), one Redis pipeline per integration to queue the
jobs. Admission is left to the workers' dispatchers, which the enqueue wakes.

An empty tick is one read query (the earliest next run), taking no write lock.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pmsq.models.base import utcnow
from pmsq.models.integration import Integration
from pmsq.models.sync import SyncExecution, SyncSchedule, SyncType
from pmsq.scheduler.schedules import ACTIVE, next_due
from pmsq.workers.flow.backend import FlowControl
from pmsq.workers.sync_starter import backsyncs_running, build_sync

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
        flow: FlowControl,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._flow = flow
        self._clock = clock

    def fire_due(self) -> TickResult:
        now = self._clock()
        with self._session_factory() as session:
            earliest = _earliest(session)
        if earliest is None or earliest > now:
            return TickResult(0, 0, earliest, False)
        try:
            with self._session_factory.begin() as session:
                started, skipped, more_due = self._fire(session, now)
                earliest = _earliest(session)
        except IntegrityError:
            # Another beat inserted a fire key between our check and our insert: the next tick
            # (at once) sees it taken, advances that schedule and fires the rest.
            logger.info("due syncs were being fired by another beat; trying again")
            return TickResult(0, 0, None, True)
        self._flow.enqueue_many(started)
        fired = sum(len(ids) for ids in started.values())
        return TickResult(fired, skipped, earliest, more_due)

    def _fire(self, session: Session, now: datetime) -> tuple[dict[str, list[str]], int, bool]:
        due = session.execute(
            select(SyncSchedule, Integration)
            .join(Integration, Integration.id == SyncSchedule.integration_id)
            .where(SyncSchedule.status == ACTIVE, SyncSchedule.next_run_at <= now)
            .order_by(SyncSchedule.next_run_at)
            .limit(FIRE_BATCH)
            .with_for_update(skip_locked=True, of=SyncSchedule)
        ).all()
        held = backsyncs_running(session, [integration.id for _, integration in due])
        taken = _taken_fire_keys(session, [schedule for schedule, _ in due])
        started: dict[str, list[str]] = defaultdict(list)
        skipped = 0
        for schedule, integration in due:
            scheduled_for = schedule.next_run_at
            assert scheduled_for is not None
            schedule.last_run_at = scheduled_for
            # Missed runs (beat was down) collapse into this one: the next run is after now.
            schedule.next_run_at = next_due(integration, schedule, max(now, scheduled_for))
            if (schedule.id, scheduled_for) in taken:
                # This very run was fired already (an API change moved `next_run_at` back onto
                # it): advancing is all there is to do, and the rest of the batch still fires.
                logger.info("sync of %s at %s was already fired", integration.id, scheduled_for)
                skipped += 1
                continue
            execution, job = build_sync(
                integration,
                SyncType.SCHEDULED,
                now,
                schedule_id=schedule.id,
                scheduled_for=scheduled_for,
                held_by_backsync=integration.id in held,
            )
            session.add(execution)
            if job is None:
                skipped += 1
            else:
                session.add(job)
                started[integration.id].append(job.id)
        session.flush()
        return started, skipped, len(due) == FIRE_BATCH


def _taken_fire_keys(session: Session, schedules: list[SyncSchedule]) -> set[tuple[str, datetime]]:
    """The (schedule, scheduled time) pairs among `schedules`' due runs that an execution
    already holds: one indexed query (the fire key's unique index)."""
    pairs = [(s.id, s.next_run_at) for s in schedules if s.next_run_at is not None]
    if not pairs:
        return set()
    rows = session.execute(
        select(SyncExecution.schedule_id, SyncExecution.scheduled_for).where(
            tuple_(SyncExecution.schedule_id, SyncExecution.scheduled_for).in_(pairs)
        )
    ).all()
    return {(str(schedule_id), at) for schedule_id, at in rows if at is not None}


def _earliest(session: Session) -> datetime | None:
    value: datetime | None = session.scalar(
        select(func.min(SyncSchedule.next_run_at)).where(SyncSchedule.status == ACTIVE)
    )
    return value

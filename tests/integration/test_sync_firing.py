"""Beat's firing of due syncs, on SQLite and PostgreSQL: a schedule whose fire key is already
taken must not hold back any other schedule (nor itself) on later ticks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.models.account import Account
from pmsq.models.enums import Vendor
from pmsq.models.integration import Integration
from pmsq.models.sync import SyncExecution, SyncSchedule, SyncType
from pmsq.scheduler.firing import SyncFirer
from pmsq.scheduler.schedules import refresh_schedule
from pmsq.workers.sync_starter import build_sync

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class RecordingFlow:
    """The one flow-control call firing makes: enqueue the started sync jobs."""

    def __init__(self) -> None:
        self.enqueued: dict[str, list[str]] = {}

    def enqueue_many(self, batches: Mapping[str, Sequence[str]], *, ahead: bool = False) -> None:
        for integration_id, job_ids in batches.items():
            self.enqueued.setdefault(integration_id, []).extend(job_ids)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _integration(session: Session, account_id: str, name: str) -> Integration:
    integration = Integration(
        account_id=account_id,
        name=name,
        integration_vendor=Vendor.SANDBOX.value,
        sync_frequency=1,
        sync_cadence="MINUTE",
    )
    session.add(integration)
    session.flush()
    refresh_schedule(session, integration, T0)
    return integration


@pytest.fixture
def two_due(session_factory: sessionmaker[Session]) -> tuple[str, str]:
    """Two integrations syncing every minute; the first one's next run was already fired (an
    execution holds its fire key), as when an API change recomputes `next_run_at` back onto a
    time beat has fired."""
    with session_factory.begin() as session:
        account = Account(name="acme")
        session.add(account)
        session.flush()
        first = _integration(session, account.id, "first")
        second = _integration(session, account.id, "second")
        schedule = session.scalars(
            select(SyncSchedule).where(SyncSchedule.integration_id == first.id)
        ).one()
        # The first is due a little earlier, so it comes first in every batch.
        second_schedule = session.scalars(
            select(SyncSchedule).where(SyncSchedule.integration_id == second.id)
        ).one()
        assert schedule.next_run_at is not None
        second_schedule.next_run_at = schedule.next_run_at + timedelta(seconds=1)
        fired, _job = build_sync(
            first,
            SyncType.SCHEDULED,
            T0,
            schedule_id=schedule.id,
            scheduled_for=schedule.next_run_at,
        )
        session.add(fired)
        return first.id, second.id


def _executions(session_factory: sessionmaker[Session], integration_id: str) -> int:
    with session_factory() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(SyncExecution)
                .where(SyncExecution.integration_id == integration_id)
            )
            or 0
        )


def test_a_taken_fire_key_skips_that_run_and_fires_the_others(
    session_factory: sessionmaker[Session], two_due: tuple[str, str]
) -> None:
    """Failed on the code before: the IntegrityError rolled back the whole batch, every tick."""
    first, second = two_due
    flow = RecordingFlow()
    clock = Clock(T0 + timedelta(minutes=1, seconds=5))
    firer = SyncFirer(session_factory, flow, clock)  # type: ignore[arg-type]

    result = firer.fire_due()

    assert result.fired == 1
    assert list(flow.enqueued) == [second]
    assert _executions(session_factory, second) == 1
    assert _executions(session_factory, first) == 1, "the taken run is not fired again"
    with session_factory() as session:
        schedules = {s.integration_id: s for s in session.scalars(select(SyncSchedule)).all()}
    for schedule in schedules.values():
        assert schedule.next_run_at is not None
        assert schedule.next_run_at.replace(tzinfo=UTC) > clock.now, "each schedule advanced"

    # Beat goes on: the first integration's next run fires normally.
    clock.now = schedules[first].next_run_at.replace(tzinfo=UTC) + timedelta(seconds=2)
    again = firer.fire_due()
    assert again.fired == 2
    assert _executions(session_factory, first) == 2

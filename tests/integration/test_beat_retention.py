"""Beat purges what is past retention, and only the beat holding the leader lease does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.processes import wait_until

from pmsq.models.account import Account
from pmsq.models.base import new_id, utcnow
from pmsq.models.enums import JobStatus, Vendor
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.scheduler.beat import DatabaseScheduler
from pmsq.scheduler.leader import LEADER_KEY
from pmsq.settings import get_settings

RETENTION_DAYS = 2


@pytest.fixture
def scheduler(
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DatabaseScheduler]:
    monkeypatch.setenv("PMSQ_DATABASE_URL", database_url)
    monkeypatch.setenv("PMSQ_REDIS_URL", redis_url)
    monkeypatch.setenv("PMSQ_RETENTION_DAYS", str(RETENTION_DAYS))
    get_settings.cache_clear()
    app = Celery("beat-retention", broker=redis_url)
    beat = DatabaseScheduler(app)
    try:
        yield beat
    finally:
        beat.close()
        app.close()
        get_settings.cache_clear()


def add_finished_write(session_factory: sessionmaker[Session], age_days: float) -> str:
    finished_at = utcnow() - timedelta(days=age_days)
    with session_factory.begin() as session:
        account = Account(name=f"acct-{uuid.uuid4().hex[:12]}")
        session.add(account)
        session.flush()
        integration = Integration(
            account_id=account.id, name="b", integration_vendor=Vendor.SANDBOX.value
        )
        session.add(integration)
        session.flush()
        job_id = new_id()
        session.add(
            Job(
                id=job_id,
                root_job_id=job_id,
                account_id=account.id,
                integration_id=integration.id,
                model="residents",
                action="CREATE",
                payload={},
                status=JobStatus.SUCCESS.value,
                finished_at=finished_at,
                tree_finished=1,
                tree_succeeded=1,
                tree_finished_at=finished_at,
            )
        )
        return job_id


def remaining(session_factory: sessionmaker[Session], *job_ids: str) -> set[str]:
    with session_factory() as session:
        return set(session.scalars(select(Job.id).where(Job.id.in_(job_ids))).all())


def test_the_leading_beat_purges_old_writes_and_keeps_recent_ones(
    scheduler: DatabaseScheduler, session_factory: sessionmaker[Session]
) -> None:
    old = add_finished_write(session_factory, RETENTION_DAYS + 1)
    recent = add_finished_write(session_factory, RETENTION_DAYS - 1)

    def ticked_until_purged() -> bool:
        scheduler.tick()
        return not remaining(session_factory, old)

    wait_until(ticked_until_purged, deadline_s=30, message="beat purged the old write")
    assert remaining(session_factory, old, recent) == {recent}


def test_a_beat_that_does_not_lead_purges_nothing(
    scheduler: DatabaseScheduler, session_factory: sessionmaker[Session], redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(LEADER_KEY, "another-beat", px=60_000)
        old = add_finished_write(session_factory, RETENTION_DAYS + 1)
        for _ in range(3):
            scheduler.tick()
        assert remaining(session_factory, old) == {old}
    finally:
        client.delete(LEADER_KEY)
        client.close()

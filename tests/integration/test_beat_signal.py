"""Beat keeps the earliest next run in memory: an idle tick does not read the job store, and a
committed schedule change is still followed on the next tick (signalled) or within the recheck
interval (signal lost); a beat that takes over the leadership reads afresh."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support.services import RedisClusterGroup

from pmsq.metrics import COUNTERS_KEY
from pmsq.models.account import Account
from pmsq.models.base import utcnow
from pmsq.models.enums import Vendor
from pmsq.models.integration import Integration
from pmsq.models.sync import SyncExecution
from pmsq.redis_client import connect
from pmsq.scheduler import beat as beat_module
from pmsq.scheduler.beat import DatabaseScheduler
from pmsq.scheduler.changes import (
    RECHECK_S,
    SCHEDULES_CHANGED_KEY,
    signal,
    signal_schedule_changes,
)
from pmsq.scheduler.firing import SyncFirer, TickResult
from pmsq.scheduler.leader import LEADER_KEY
from pmsq.scheduler.schedules import refresh_schedule
from pmsq.settings import get_settings


class Monotonic:
    """Beat's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[TickResult]:
    """Every `SyncFirer.fire_due` (beat's only read of the schedules) records its result."""
    seen: list[TickResult] = []
    fire_due = SyncFirer.fire_due

    def recording(self: SyncFirer) -> TickResult:
        result = fire_due(self)
        seen.append(result)
        return result

    monkeypatch.setattr(SyncFirer, "fire_due", recording)
    return seen


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    monotonic = Monotonic()
    monkeypatch.setattr(beat_module, "monotonic", monotonic)
    return monotonic


@pytest.fixture
def scheduler(
    database_url: str,
    redis_url: str,
    client: redis.Redis,
    clock: Monotonic,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DatabaseScheduler]:
    monkeypatch.setenv("PMSQ_DATABASE_URL", database_url)
    monkeypatch.setenv("PMSQ_REDIS_URL", redis_url)
    get_settings.cache_clear()
    app = Celery("beat-signal", broker=redis_url)
    beat = DatabaseScheduler(app)
    try:
        yield beat
    finally:
        beat.close()
        app.close()
        get_settings.cache_clear()


@pytest.fixture
def signalling(
    session_factory: sessionmaker[Session], client: redis.Redis
) -> Iterator[sessionmaker[Session]]:
    """The API's sessions: their commits signal schedule changes."""
    stop = signal_schedule_changes(session_factory.kw["bind"], client)
    try:
        yield session_factory
    finally:
        stop()


def add_integration(session_factory: sessionmaker[Session], *, due_in_s: float) -> str:
    """An integration syncing every minute whose next sync is `due_in_s` from now."""
    with session_factory.begin() as session:
        account = Account(name=f"acct-{uuid.uuid4().hex[:12]}")
        session.add(account)
        session.flush()
        integration = Integration(
            account_id=account.id,
            name="s",
            integration_vendor=Vendor.SANDBOX.value,
            sync_frequency=1,
            sync_cadence="MINUTE",
            active=True,
        )
        session.add(integration)
        session.flush()
        # The cadence counts from the anchor: anchored 60 - due_in_s ago, next due in due_in_s.
        refresh_schedule(session, integration, utcnow() - timedelta(seconds=60 - due_in_s))
        return integration.id


def fired(session_factory: sessionmaker[Session], integration_id: str) -> int:
    with session_factory() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(SyncExecution)
                .where(SyncExecution.integration_id == integration_id)
            )
            or 0
        )


def test_idle_ticks_do_not_read_the_job_store(
    scheduler: DatabaseScheduler, signalling: sessionmaker[Session], reads: list[TickResult]
) -> None:
    add_integration(signalling, due_in_s=30)
    scheduler.tick()
    assert len(reads) == 1
    for _ in range(5):
        assert scheduler.tick() > 0
    assert len(reads) == 1


def test_a_signalled_change_is_fired_on_the_next_tick(
    scheduler: DatabaseScheduler, signalling: sessionmaker[Session], reads: list[TickResult]
) -> None:
    add_integration(signalling, due_in_s=30)
    scheduler.tick()
    scheduler.tick()
    integration_id = add_integration(signalling, due_in_s=-5)
    scheduler.tick()
    assert fired(signalling, integration_id) == 1
    assert len(reads) == 2


def test_an_unsignalled_change_is_followed_within_the_recheck_interval(
    scheduler: DatabaseScheduler,
    session_factory: sessionmaker[Session],
    clock: Monotonic,
) -> None:
    add_integration(session_factory, due_in_s=30)
    scheduler.tick()
    # Committed without the signal (as if Redis was away right after the commit).
    integration_id = add_integration(session_factory, due_in_s=-5)
    clock.now += RECHECK_S - 1
    scheduler.tick()
    assert fired(session_factory, integration_id) == 0
    clock.now += 1
    scheduler.tick()
    assert fired(session_factory, integration_id) == 1


def test_a_beat_taking_the_leadership_reads_afresh(
    scheduler: DatabaseScheduler,
    session_factory: sessionmaker[Session],
    client: redis.Redis,
) -> None:
    add_integration(session_factory, due_in_s=30)
    scheduler.tick()
    client.set(LEADER_KEY, "another-beat", px=60_000)
    scheduler.tick()
    # The other leader's beat saw this one (no signal reaches the waiting beat's memory).
    integration_id = add_integration(session_factory, due_in_s=-5)
    client.delete(LEADER_KEY)
    scheduler.tick()
    assert fired(session_factory, integration_id) == 1


def test_a_change_signals_after_its_commit_only(
    signalling: sessionmaker[Session], client: redis.Redis
) -> None:
    add_integration(signalling, due_in_s=30)
    first = client.get(SCHEDULES_CHANGED_KEY)
    assert first is not None
    with signalling.begin() as session:
        session.add(Account(name=f"acct-{uuid.uuid4().hex[:12]}"))
    assert client.get(SCHEDULES_CHANGED_KEY) == first
    with pytest.raises(RuntimeError), signalling.begin() as session:
        integration = session.scalars(select(Integration)).first()
        assert integration is not None
        refresh_schedule(session, integration, utcnow())
        raise RuntimeError("rolled back")
    assert client.get(SCHEDULES_CHANGED_KEY) == first
    add_integration(signalling, due_in_s=30)
    assert client.get(SCHEDULES_CHANGED_KEY) not in (None, first)


def test_ticks_are_still_counted(scheduler: DatabaseScheduler, client: redis.Redis) -> None:
    for _ in range(3):
        scheduler.tick()
    scheduler.close()
    assert client.hget(COUNTERS_KEY, "pmsq_beat_ticks|") == b"3"


def test_the_lease_is_taken_after_redis_lost_its_scripts(
    scheduler: DatabaseScheduler, client: redis.Redis
) -> None:
    scheduler.tick()
    client.script_flush()  # a restarted or failed-over Redis: EVALSHA answers NOSCRIPT
    client.delete(LEADER_KEY)
    scheduler.tick()
    assert client.get(LEADER_KEY) is not None
    assert client.hget(COUNTERS_KEY, "pmsq_beat_ticks|") == b"1"


def test_a_beat_on_a_redis_cluster_leads_counts_and_follows_the_signal(
    database_url: str,
    redis_url: str,
    redis_cluster: RedisClusterGroup,
    reads: list[TickResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The round trip's lease, signal and counter keys sit in different slots: the pipeline
    must span them without a cross-slot command."""
    cluster = connect(redis_cluster.url)
    cluster.flushdb()
    monkeypatch.setenv("PMSQ_DATABASE_URL", database_url)
    monkeypatch.setenv("PMSQ_REDIS_URL", redis_cluster.url)
    monkeypatch.setenv("PMSQ_BROKER_URL", redis_url)
    get_settings.cache_clear()
    app = Celery("beat-cluster", broker=redis_url)
    beat = DatabaseScheduler(app)
    try:
        beat.tick()
        beat.tick()
        assert cluster.get(LEADER_KEY) is not None
        assert len(reads) == 1
        signal(cluster)
        beat.tick()
        assert len(reads) == 2
    finally:
        beat.close()
        app.close()
        get_settings.cache_clear()
        cluster.close()
    assert connect(redis_cluster.url).hget(COUNTERS_KEY, "pmsq_beat_ticks|") == b"3"

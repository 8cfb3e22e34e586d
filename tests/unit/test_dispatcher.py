"""The Dispatcher against a real SQLite job store, flow control in fakeredis and a fake broker.

The job store's clock is a value the test moves by hand; Redis keeps its own (real) clock, and
the tests only rely on it for limits that are either long past or far away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from support.metrics import CountingMetrics
from support.store import add_root_job

from pmsq.models.account import Account
from pmsq.models.enums import Cadence, JobStatus, Vendor
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.settings import Settings
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.backend import Pace, redis_time
from pmsq.workers.flow.keys import READY, IntegrationKeys
from pmsq.workers.flow.limits import Limits
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.healing import ORPHAN_AGE_S, Healer
from pmsq.workers.publisher import AdmittedJob

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LEASE_S = 30.0
MAX_DELIVERIES = 3
DISPATCH_INTERVAL_S = 10.0
#: Requests are no constraint here (a slot every 11 us): concurrency is what is tested.
REQUESTS_PER_SECOND = 100_000


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class RecordingPublisher:
    published: list[AdmittedJob] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [job.job_id for job in self.published]

    def publish(self, job: AdmittedJob) -> None:
        self.published.append(job)


@dataclass
class World:
    session_factory: sessionmaker[Session]
    settings: Settings
    clock: Clock = field(default_factory=lambda: Clock(T0))
    redis: fakeredis.FakeRedis = field(default_factory=fakeredis.FakeRedis)
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)

    def __post_init__(self) -> None:
        self.flow = RedisFlowControl(self.redis)
        self.dispatcher = Dispatcher(
            self.session_factory, self.publisher, self.flow, self.settings, self.clock
        )
        self.healer = Healer(self.session_factory, self.dispatcher, self.settings, self.clock)
        with self.session_factory.begin() as session:
            account = Account(name="acme")
            session.add(account)
            session.flush()
            self.account_id = account.id

    def add_integration(self, concurrency: int) -> str:
        with self.session_factory.begin() as session:
            integration = Integration(
                account_id=self.account_id,
                name="acme pms",
                integration_vendor=Vendor.SANDBOX.value,
                max_request_frequency=REQUESTS_PER_SECOND,
                max_request_cadence=Cadence.SECOND.value,
                max_job_concurrency=concurrency,
            )
            session.add(integration)
            session.flush()
            return integration.id

    def change_concurrency(self, integration_id: str, concurrency: int) -> None:
        """What `PUT /integrations/{id}` does: the row, then the live limits in Redis."""
        with self.session_factory.begin() as session:
            integration = session.get(Integration, integration_id)
            assert integration is not None
            integration.max_job_concurrency = concurrency
            limits = Limits.of(integration, self.settings.rate_margin_ms)
        self.flow.set_limits(integration_id, limits)

    def add_job(
        self, integration_id: str, status: JobStatus = JobStatus.PENDING, **values: Any
    ) -> str:
        """A job row as it stands in the store, nothing in Redis."""
        return add_root_job(
            self.session_factory,
            self.account_id,
            integration_id,
            self.clock.now,
            status=status,
            **values,
        )

    def submit_new(self, integration_id: str, count: int) -> list[str]:
        job_ids = [self.add_job(integration_id) for _ in range(count)]
        self.dispatcher.submit(integration_id, job_ids)
        return job_ids

    def job(self, job_id: str) -> Job:
        with self.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def status(self, job_id: str) -> str:
        return self.job(job_id).status

    def redis_now_us(self) -> int:
        seconds, micros = self.redis.time()
        return seconds * 1_000_000 + micros


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> World:
    settings = Settings(
        database_url=str(session_factory.kw["bind"].url),
        job_lease_s=LEASE_S,
        max_deliveries=MAX_DELIVERIES,
        dispatch_interval_s=DISPATCH_INTERVAL_S,
    )
    return World(session_factory, settings)


# --- admission -----------------------------------------------------------------------------------


def test_submit_publishes_no_more_than_the_concurrency(world: World) -> None:
    iid = world.add_integration(concurrency=1)
    job_ids = [world.add_job(iid) for _ in range(3)]

    before = world.redis_now_us()
    assert world.dispatcher.submit(iid, job_ids) == 1
    after = world.redis_now_us()

    [first] = world.publisher.published
    assert first == AdmittedJob(job_ids[0], iid, "residents", "CREATE", job_ids[0])
    assert [world.status(j) for j in job_ids] == ["QUEUED", "PENDING", "PENDING"]
    assert world.job(job_ids[0]).due_at is None
    usage = world.flow.usage(iid)
    assert (usage.in_flight, usage.backlog) == (1, 2)
    # Held back by the slot, not the rate: once the loop has looked, the next admission is
    # when the lease runs out.
    world.dispatcher.tick()
    assert len(world.publisher.published) == 1
    usage = world.flow.usage(iid)
    lease_us = round(LEASE_S * 1_000_000)
    assert usage.next_admission_us is not None
    assert before + lease_us <= usage.next_admission_us <= after + lease_us


def test_dispatcher_ticks_fill_the_concurrency_and_never_exceed_it(world: World) -> None:
    iid = world.add_integration(concurrency=3)
    world.submit_new(iid, 5)

    for _ in range(50):
        world.dispatcher.tick()

    assert len(world.publisher.published) == 3
    assert (world.flow.usage(iid).in_flight, world.flow.usage(iid).backlog) == (3, 2)


def test_a_release_lets_the_next_job_in(world: World) -> None:
    iid = world.add_integration(concurrency=1)
    first, second, third = world.submit_new(iid, 3)
    assert world.dispatcher.admit_integration(iid) == 0  # full

    assert world.flow.release(iid, first) == 2  # as a finishing job does
    assert world.dispatcher.admit_integration(iid) == 1

    assert world.publisher.ids == [first, second]
    assert [world.status(j) for j in (second, third)] == ["QUEUED", "PENDING"]


def test_a_live_limits_change_applies_to_the_next_admission(world: World) -> None:
    iid = world.add_integration(concurrency=1)
    world.submit_new(iid, 4)
    assert world.dispatcher.admit_integration(iid) == 0

    world.change_concurrency(iid, 3)

    assert world.dispatcher.admit_integration(iid) == 2  # same dispatcher, no restart
    assert world.flow.usage(iid).in_flight == 3

    world.change_concurrency(iid, 1)
    world.flow.release(iid, world.publisher.ids[0])
    assert world.dispatcher.admit_integration(iid) == 0  # 2 still run, over the new limit
    assert len(world.publisher.published) == 3


def test_limits_are_loaded_from_the_database_on_first_admission(world: World) -> None:
    iid = world.add_integration(concurrency=2)
    assert world.flow.usage(iid).limits is None

    world.submit_new(iid, 1)

    with world.session_factory() as session:
        integration = session.get(Integration, iid)
        assert integration is not None
        expected = Limits.of(integration, world.settings.rate_margin_ms)
    assert world.flow.usage(iid).limits == expected


def test_a_delayed_submit_publishes_nothing_yet(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    job_id = world.add_job(iid, due_at=T0 + timedelta(hours=1))

    assert world.dispatcher.submit(iid, [job_id], delay_s=3600) == 0
    assert world.dispatcher.admit_integration(iid) == 0

    assert world.publisher.published == []
    assert world.flow.in_backlog(iid, [job_id]) == [True]


def test_a_backlog_entry_of_a_job_no_longer_pending_gives_its_slot_back(world: World) -> None:
    iid = world.add_integration(concurrency=1)
    done = world.add_job(iid, status=JobStatus.SUCCESS)
    waiting = world.add_job(iid)

    world.flow.enqueue(iid, [done])  # e.g. a duplicate entry left behind
    assert world.dispatcher.submit(iid, [waiting]) == 0  # `done` took the slot, published nothing
    assert world.flow.usage(iid).in_flight == 0  # and gave it straight back
    assert world.dispatcher.admit_integration(iid) == 1
    assert world.publisher.ids == [waiting]


def test_an_admission_moves_its_jobs_in_a_write_transaction(world: World) -> None:
    # On SQLite a write transaction takes the write lock up front (`BEGIN IMMEDIATE`): one
    # begun as a read and upgraded by its UPDATE could fail at once on a busy store.
    iid = world.add_integration(concurrency=1)
    job_id = world.add_job(iid)
    world.dispatcher.load_limits(iid)
    with world.session_factory.begin() as session:
        engine = session.get_bind()  # the store's engine: its events are every connection's
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()[:2]).upper())

    event.listen(engine, "before_cursor_execute", note)
    try:
        assert world.dispatcher.submit(iid, [job_id]) == 1
    finally:
        event.remove(engine, "before_cursor_execute", note)

    assert sent == ["BEGIN IMMEDIATE", "UPDATE JOBS"]
    assert world.status(job_id) == JobStatus.QUEUED.value


# --- the loop ------------------------------------------------------------------------------------


def test_tick_admits_every_due_integration(world: World) -> None:
    first, second = world.add_integration(1), world.add_integration(1)
    a, b = world.add_job(first), world.add_job(second)
    world.flow.enqueue(first, [a])
    world.flow.enqueue(second, [b])

    assert world.dispatcher.tick() == 0.0  # worked: look again at once

    assert sorted(world.publisher.ids) == sorted([a, b])
    assert world.dispatcher.tick() == DISPATCH_INTERVAL_S
    assert world.redis.zcard(READY) == 0  # empty backlogs leave the ready set


def test_tick_sleeps_no_longer_than_the_dispatch_interval(world: World) -> None:
    assert world.dispatcher.tick() == DISPATCH_INTERVAL_S  # nothing anywhere

    iid = world.add_integration(concurrency=5)
    world.flow.enqueue(iid, [world.add_job(iid)], delay_s=3600)
    assert world.dispatcher.tick() == DISPATCH_INTERVAL_S  # due far later: capped

    soon = world.add_integration(concurrency=5)
    world.flow.enqueue(soon, [world.add_job(soon)], delay_s=DISPATCH_INTERVAL_S / 2)
    sleep_s = world.dispatcher.tick()
    assert 0 < sleep_s <= DISPATCH_INTERVAL_S / 2  # wakes when it is due
    assert world.publisher.published == []


# --- healing -------------------------------------------------------------------------------------


def test_a_pending_job_missing_from_redis_is_enqueued_and_published(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    orphan = world.add_job(iid, due_at=T0 - timedelta(minutes=1))

    assert world.healer.enqueue_orphans() == 1

    assert world.publisher.ids == [orphan]
    assert world.status(orphan) == JobStatus.QUEUED.value


def test_orphan_sweep_leaves_young_and_present_jobs_alone(world: World) -> None:
    iid = world.add_integration(concurrency=1)
    [running] = world.submit_new(iid, 1)
    present = world.add_job(iid, due_at=T0 - timedelta(minutes=1))
    world.dispatcher.submit(iid, [present])  # in its backlog, waiting for the slot
    orphan = world.add_job(iid, due_at=T0 - timedelta(minutes=1))
    # Just committed, maybe not enqueued yet: not an orphan.
    young = world.add_job(iid, due_at=T0 - timedelta(seconds=ORPHAN_AGE_S / 2))
    delayed = world.add_job(iid, due_at=T0 + timedelta(minutes=5))

    assert world.healer.enqueue_orphans() == 1

    assert world.flow.in_backlog(iid, [present, orphan, young, delayed]) == [
        True,
        True,
        False,
        False,
    ]
    assert world.publisher.ids == [running]
    assert world.healer.enqueue_orphans() == 0  # found once


def test_the_sweep_never_enqueues_a_job_admitted_meanwhile(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    job = world.add_job(iid, due_at=T0 - timedelta(minutes=1))
    world.flow.enqueue(iid, [job])
    world.dispatcher.load_limits(iid)
    # An admission popped it from its backlog; its dispatcher has not yet moved it to QUEUED,
    # so the sweep still reads it PENDING and finds it missing from the backlog.
    assert world.flow.admit(iid, 10, LEASE_S).job_ids == (job,)

    assert world.healer.enqueue_orphans() == 0

    assert world.flow.in_backlog(iid, [job]) == [False]
    assert world.publisher.ids == []  # published once, by the admission that took it
    assert world.flow.usage(iid).in_flight == 1


def test_a_stale_backlog_entry_never_frees_a_running_jobs_lease(world: World) -> None:
    iid = world.add_integration(concurrency=2)
    world.dispatcher.load_limits(iid)
    running = world.add_job(iid, status=JobStatus.RUNNING, due_at=None, deliveries=1)
    assert world.flow.hold(iid, running, 1, LEASE_S).held
    waiting = world.add_job(iid)
    world.flow.enqueue(iid, [running])  # a copy left behind, as a stale sweep did

    world.dispatcher.submit(iid, [waiting])
    world.dispatcher.admit_integration(iid)

    assert world.publisher.ids == [waiting]
    assert world.flow.pace(iid, running, 1)[0] is Pace.GO  # its claim still holds its lease
    assert world.flow.usage(iid).in_flight == 2


def test_a_lost_ready_set_is_repaired(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    job = world.add_job(iid)
    world.flow.enqueue(iid, [job])
    world.redis.delete(READY)

    world.healer.heal()
    world.dispatcher.tick()

    assert world.publisher.ids == [job]


def test_limits_older_than_the_store_are_reloaded(world: World) -> None:
    iid = world.add_integration(concurrency=1)
    world.flow.enqueue(iid, [world.add_job(iid, due_at=T0 + timedelta(hours=1))], delay_s=3600)
    world.dispatcher.load_limits(iid)
    with world.session_factory.begin() as session:
        integration = session.get(Integration, iid)
        assert integration is not None
        old = Limits.of(integration, world.settings.rate_margin_ms)
        # A PUT raised the concurrency; its write to Redis was lost (or an older PUT's landed
        # after it).
        integration.max_job_concurrency = 3
        integration.updated_at = integration.updated_at + timedelta(seconds=1)

    assert world.healer.refresh_limits() == 1
    limits = world.flow.usage(iid).limits
    assert limits is not None and limits.concurrency == 3
    # The older limits arriving late change nothing; nothing is stale any more.
    world.flow.set_limits(iid, old)
    limits = world.flow.usage(iid).limits
    assert limits is not None and limits.concurrency == 3
    assert world.healer.refresh_limits() == 0


def test_a_queued_job_never_claimed_goes_through_admission_again(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    # Admitted over a lease ago, its admission lease lapsed and its message lost.
    lost = world.add_job(
        iid, status=JobStatus.QUEUED, due_at=None, updated_at=T0 - timedelta(seconds=LEASE_S + 1)
    )
    # As old by this host's clock, but its admission lease is live on Redis's: a worker may
    # still claim it (this host's clock may be fast).
    waiting = world.add_job(
        iid, status=JobStatus.QUEUED, due_at=None, updated_at=T0 - timedelta(seconds=LEASE_S + 1)
    )
    world.redis.zadd(IntegrationKeys(iid).leases, {waiting: world.redis_now_us() + 10**9})
    recent = world.add_job(
        iid, status=JobStatus.QUEUED, due_at=None, updated_at=T0 - timedelta(seconds=5)
    )

    assert world.healer.requeue_stale_queued() == 1

    assert world.publisher.ids == [lost]
    job = world.job(lost)
    assert job.status == JobStatus.QUEUED.value
    assert job.updated_at >= T0
    assert world.healer.requeue_stale_queued() == 0  # republished: fresh again
    assert world.publisher.ids == [lost]
    assert {world.status(j) for j in (waiting, recent)} == {JobStatus.QUEUED.value}


def test_a_running_job_whose_lease_expired_is_admitted_again(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    lease_end = redis_time(world.redis_now_us())
    lost = world.add_job(
        iid,
        status=JobStatus.RUNNING,
        due_at=None,
        deliveries=1,
        unrecorded_claims=1,
        attempts=1,
        lease_expires_at=lease_end,
    )
    alive = world.add_job(
        iid,
        status=JobStatus.RUNNING,
        due_at=None,
        deliveries=1,
        unrecorded_claims=1,
        lease_expires_at=lease_end,
    )
    # Its worker renewed its claim lease in Redis; the database's copy has not caught up.
    assert world.flow.hold(iid, alive, 1, LEASE_S).held

    assert world.healer.reclaim_expired_leases() == 1

    assert world.publisher.ids == [lost]
    job = world.job(lost)
    assert (job.status, job.outcome_unknown, job.lease_expires_at) == (
        JobStatus.QUEUED.value,
        True,
        None,
    )
    assert job.deliveries == 1  # a claim, not the dispatcher, counts deliveries
    assert world.status(alive) == JobStatus.RUNNING.value


def test_a_reclaimed_job_keeps_its_turn_ahead_of_the_backlog(world: World) -> None:
    """A job a lost worker interrupted goes back at the head of its backlog, so it resumes
    within about a lease however long the backlog. Before, it queued behind every waiting job
    (in the chaos bench, up to 160 s behind a 1,000-write backlog)."""
    iid = world.add_integration(concurrency=1)
    lost = world.add_job(
        iid,
        status=JobStatus.RUNNING,
        due_at=None,
        deliveries=1,
        unrecorded_claims=1,
        attempts=1,
        lease_expires_at=redis_time(world.redis_now_us()),
    )
    waiting = [world.add_job(iid) for _ in range(3)]
    world.flow.enqueue(iid, waiting)

    assert world.healer.reclaim_expired_leases() == 1

    assert world.publisher.ids == [lost]
    assert all(world.status(job_id) == JobStatus.PENDING.value for job_id in waiting)


def test_a_dispatcher_whose_clock_runs_fast_reclaims_no_live_job(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    alive = world.add_job(
        iid,
        status=JobStatus.RUNNING,
        due_at=None,
        deliveries=1,
        unrecorded_claims=1,
        lease_expires_at=redis_time(world.redis_now_us()) + timedelta(seconds=LEASE_S),
    )
    assert world.flow.hold(iid, alive, 1, LEASE_S).held
    # This host's clock is a lease and 7 s ahead of Redis's (and the worker's).
    world.clock.now = redis_time(world.redis_now_us()) + timedelta(seconds=LEASE_S + 7)

    world.healer.heal()

    assert world.status(alive) == JobStatus.RUNNING.value
    assert world.publisher.ids == []
    world.dispatcher.load_limits(iid)
    assert world.flow.pace(iid, alive, 1)[0] is Pace.GO  # its worker may still send


def test_a_job_lost_max_deliveries_times_fails_as_poison(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    lease_end = T0 + timedelta(seconds=LEASE_S)
    poison = world.add_job(
        iid,
        status=JobStatus.RUNNING,
        due_at=None,
        deliveries=MAX_DELIVERIES + 2,
        unrecorded_claims=MAX_DELIVERIES,
        lease_expires_at=lease_end,
    )
    one_short = world.add_job(
        iid,
        status=JobStatus.RUNNING,
        due_at=None,
        deliveries=MAX_DELIVERIES + 2,
        unrecorded_claims=MAX_DELIVERIES - 1,
        lease_expires_at=lease_end,
    )
    world.clock.now = lease_end + timedelta(seconds=1)
    metrics = CountingMetrics()
    dispatcher = Dispatcher(
        world.session_factory, world.publisher, world.flow, world.settings, world.clock, metrics
    )
    healer = Healer(world.session_factory, dispatcher, world.settings, world.clock)

    assert healer.reclaim_expired_leases() == 1

    assert metrics.total("pmsq_poison_jobs", integration_id=iid) == 1
    job = world.job(poison)
    assert job.status == JobStatus.FAILURE.value
    assert job.error is not None
    assert f"delivered {MAX_DELIVERIES} times" in job.error
    assert "PMSQ_MAX_DELIVERIES" in job.error
    assert world.publisher.ids == [one_short]
    assert world.flow.in_backlog(iid, [poison]) == [False]


def test_maintain_runs_every_healing_pass(world: World) -> None:
    iid = world.add_integration(concurrency=5)
    orphan = world.add_job(iid, due_at=T0 - timedelta(minutes=1))
    stale = world.add_job(
        iid,
        status=JobStatus.QUEUED,
        due_at=None,
        updated_at=T0 - timedelta(seconds=LEASE_S + 1),
    )
    lost = world.add_job(
        iid,
        status=JobStatus.RUNNING,
        due_at=None,
        deliveries=1,
        unrecorded_claims=1,
        lease_expires_at=T0 - timedelta(seconds=1),
    )

    world.healer.heal()

    assert sorted(world.publisher.ids) == sorted([orphan, stale, lost])


def test_flow_keys_of_one_integration_share_a_hash_tag() -> None:
    keys = IntegrationKeys("abc")
    names = [
        keys.backlog,
        keys.leases,
        keys.admit_tat,
        keys.request_tat,
        keys.paused_until,
        keys.limits,
        keys.pms_limits,
    ]
    assert all(name.startswith("pmsq:{abc}:") for name in names)
    assert len(set(names)) == len(names)

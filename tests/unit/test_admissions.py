"""`Admissions`: the API answers a write once it is stored, and enqueues and admits it on
threads of its own; a write they fail to submit stays PENDING in the job store for the orphan
sweep, and one still waiting at shutdown is submitted by `close`, never lost.

Real SQLite job store, flow control in fakeredis, a recording broker."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest
from sqlalchemy.orm import Session, sessionmaker
from support.processes import wait_until
from support.store import add_root_job, add_unthrottled_integration

from pmsq.api.services.admission import Admissions
from pmsq.models.base import utcnow
from pmsq.models.enums import JobStatus
from pmsq.models.job import Job
from pmsq.settings import Settings
from pmsq.workers.dispatch import ADMIT_BATCH, Dispatcher
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.publisher import AdmittedJob

#: Seconds the admission thread gets to publish a job (it needs milliseconds).
ADMIT_DEADLINE_S = 10.0


@dataclass
class Broker:
    """Records published jobs; `fail_next` makes the next publish raise (a broker outage)."""

    published: list[str] = field(default_factory=list)
    fail_next: bool = False

    def publish(self, job: AdmittedJob) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker unreachable")
        self.published.append(job.job_id)


@dataclass
class World:
    session_factory: sessionmaker[Session]
    broker: Broker = field(default_factory=Broker)

    def __post_init__(self) -> None:
        self.flow = RedisFlowControl(fakeredis.FakeRedis())
        self.dispatcher = Dispatcher(self.session_factory, self.broker, self.flow, Settings())
        self.admissions = Admissions(self.dispatcher)
        self.account_id, self.integration_id = add_unthrottled_integration(self.session_factory)

    def stored_job(self) -> str:
        """A write's root job as `WriteService` commits it: PENDING, nothing in Redis."""
        return add_root_job(
            self.session_factory,
            self.account_id,
            self.integration_id,
            utcnow(),
            payload={"last_name": "Lovelace"},
        )

    def status(self, job_id: str) -> str:
        with self.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job.status

    def published(self, *job_ids: str) -> bool:
        return all(job_id in self.broker.published for job_id in job_ids)


@pytest.fixture
def world(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    # These tests are about the admission threads, which a tracer provider installed in this
    # process by another test would bypass (with tracing on, a write is admitted inline).
    monkeypatch.setattr("pmsq.api.services.admission.tracing_on", lambda: False)
    world = World(session_factory)
    yield world
    world.admissions.close()


def test_accepted_jobs_are_admitted_and_published_once(world: World) -> None:
    job_ids = [world.stored_job() for _ in range(5)]
    for job_id in job_ids:
        world.admissions.submit(world.integration_id, [job_id])
    wait_until(lambda: world.published(*job_ids), ADMIT_DEADLINE_S, message="jobs published")
    assert sorted(world.broker.published) == sorted(job_ids)
    assert {world.status(job_id) for job_id in job_ids} == {JobStatus.QUEUED.value}
    assert world.flow.usage(world.integration_id).backlog == 0


def test_a_failed_admission_leaves_the_job_to_the_workers_and_the_thread_goes_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.broker.fail_next = True
    lost = world.stored_job()
    with caplog.at_level(logging.WARNING, logger="pmsq.api.services.admission"):
        world.admissions.submit(world.integration_id, [lost])
        wait_until(
            lambda: "the orphan sweep enqueues its jobs" in caplog.text,
            ADMIT_DEADLINE_S,
            message="the failure logged",
        )
    # The thread is still there for the next write.
    later = world.stored_job()
    world.admissions.submit(world.integration_id, [later])
    wait_until(lambda: world.published(later), ADMIT_DEADLINE_S, message="next job published")
    # The failed one was QUEUED before its publish failed; the healing sweep re-publishes
    # such a job once its admission lease lapses (tests/unit/test_dispatcher.py).
    assert world.status(lost) == JobStatus.QUEUED.value
    assert lost not in world.broker.published


def test_after_close_a_write_is_admitted_in_the_callers_thread(world: World) -> None:
    """An API shutting down has no admission threads left: a write it still accepts is put in
    its backlog and admitted before its request answers."""
    world.admissions.close()
    job_id = world.stored_job()
    world.admissions.submit(world.integration_id, [job_id])
    assert world.broker.published == [job_id]
    assert world.status(job_id) == JobStatus.QUEUED.value
    assert world.flow.usage(world.integration_id).backlog == 0


def test_writes_still_waiting_at_close_are_admitted_by_close(world: World) -> None:
    """`close` submits what the threads did not take yet, so a clean shutdown leaves no
    accepted write to the orphan sweep."""
    world.admissions.close()
    world.admissions._closed = False  # reopen without threads: submissions only wait
    world.admissions._threads = [object()]  # type: ignore[list-item]
    job_ids = [world.stored_job() for _ in range(3)]
    for job_id in job_ids:
        world.admissions.submit(world.integration_id, [job_id])
    assert world.broker.published == []
    world.admissions._threads = []
    world.admissions.close()
    assert sorted(world.broker.published) == sorted(job_ids)


def test_a_write_that_waits_for_a_slot_costs_one_admission(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submit that puts a write in its backlog admits in the same round trip; when the
    limits hold it back (here the one slot is taken), no second admission asks again: it
    would find the same, and the ready set already tells a dispatcher when to come back."""
    _, world.integration_id = add_unthrottled_integration(
        world.session_factory, max_job_concurrency=1
    )
    first, waiting = world.stored_job(), world.stored_job()
    world.admissions.submit(world.integration_id, [first])
    wait_until(lambda: world.published(first), ADMIT_DEADLINE_S, message="first published")
    admissions: list[str] = []
    admit = world.flow.admit

    def counted(integration_id: str, *args: Any, **kwargs: Any) -> Any:
        admissions.append(integration_id)
        return admit(integration_id, *args, **kwargs)

    monkeypatch.setattr(world.flow, "admit", counted)
    world.admissions.submit(world.integration_id, [waiting])
    world.admissions.close()  # the threads are done with it

    assert world.flow.in_backlog(world.integration_id, [waiting]) == [True]
    assert admissions == []
    assert world.broker.published == [first]
    assert world.flow.usage(world.integration_id).next_admission_us is not None


def test_more_writes_than_one_admission_takes_are_admitted_together(world: World) -> None:
    """Writes handed over together go to Redis together; an admission takes `ADMIT_BATCH`
    jobs at most (fewer when the rate spaces them), and the thread admits again while an
    admission admits some."""
    job_ids = [world.stored_job() for _ in range(ADMIT_BATCH + 5)]
    world.admissions.submit(world.integration_id, job_ids)
    wait_until(lambda: world.published(*job_ids), ADMIT_DEADLINE_S, message="all published")
    assert world.broker.published == job_ids
    assert world.flow.usage(world.integration_id).backlog == 0

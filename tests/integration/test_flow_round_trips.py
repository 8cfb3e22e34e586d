"""Redis round trips per job on the write path, counted on a real redis-server.

A write goes through what the API does (`WriteService.submit`) and what a worker does
(`JobRunner.run`: claim, one PMS request, record, and what follows the outcome), the PMS answered
by a stub transport. Every request the Redis client sends is counted at its connection (a whole
pipeline is one round trip), and attributed to the flow-control call that sent it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
import redis
import redis.connection
from sqlalchemy.orm import Session, sessionmaker
from support.store import add_unthrottled_integration

from bench.flow import CountingConnection, LabelledFlow, StubPublisher
from pmsq.api.services.idempotency import IdempotencyKeys
from pmsq.api.services.writes import AcceptedWrite, WriteService
from pmsq.crypto import CredentialCipher
from pmsq.models.enums import JobStatus
from pmsq.settings import Settings
from pmsq.workers.connectors import ConnectorFactory
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.keys import READY
from pmsq.workers.runner import JobRunner

#: Writes counted, after one that warms up the connection, the script cache and the limits.
JOBS = 20


class WritePath:
    """The API's write service and a worker's runner, sharing one counted Redis client."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        redis_url: str,
        concurrency: int,
        pms_headers: Mapping[str, str],
    ) -> None:
        # A margin of a minute: no pacing pass is ever judged stale on a loaded machine, so
        # the count is of the code's round trips, not of the machine's hiccups.
        settings = Settings(redis_url=redis_url, job_lease_s=60.0, rate_margin_ms=60_000.0)
        self._redis_url = redis_url
        self._client = redis.Redis(
            connection_pool=redis.ConnectionPool.from_url(
                redis_url, connection_class=CountingConnection
            )
        )
        cipher = CredentialCipher(settings.fernet_keys)
        self.account_id, self.integration_id = add_unthrottled_integration(
            session_factory,
            name="rt",
            base_url="http://pms.invalid/t/rt",
            credentials_encrypted=cipher.encrypt({"api_key": "round-trip-key-0123456789"}),
            max_job_concurrency=concurrency,
        )

        def pms(request: httpx.Request) -> httpx.Response:
            return httpx.Response(201, json={"id": "r1", "last_name": "Count"}, headers=pms_headers)

        self._http = httpx.Client(transport=httpx.MockTransport(pms))
        self.publisher = StubPublisher()
        self.runner_flow = LabelledFlow(self._client)
        dispatcher = Dispatcher(session_factory, self.publisher, self.runner_flow, settings)
        self.runner = JobRunner(
            session_factory, ConnectorFactory(cipher, self._http), dispatcher, settings
        )
        self._writes = WriteService(
            session_factory, dispatcher, IdempotencyKeys(settings.idempotency_ttl_s)
        )

    def close(self) -> None:
        self._client.close()
        self._http.close()

    def pms_limits(self) -> dict[str, str]:
        return self.runner_flow.usage(self.integration_id).pms_reported

    def ready_at_us(self) -> float | None:
        probe = redis.Redis.from_url(self._redis_url)  # not counted
        try:
            return probe.zscore(READY, self.integration_id)
        finally:
            probe.close()

    def submit(self) -> str:
        body = {"integration_id": self.integration_id, "last_name": "Count"}
        accepted = self._writes.submit(self.account_id, "residents", body)
        assert isinstance(accepted, AcceptedWrite)
        return accepted.job_id

    def run(self, job_id: str) -> None:
        assert self.runner.run(job_id) == JobStatus.SUCCESS


@pytest.fixture
def make_path(session_factory: sessionmaker[Session], redis_url: str) -> Iterator[Any]:
    paths: list[WritePath] = []

    def make(concurrency: int = 1000, pms_headers: Mapping[str, str] | None = None) -> WritePath:
        paths.append(WritePath(session_factory, redis_url, concurrency, pms_headers or {}))
        return paths[-1]

    yield make
    for path in paths:
        path.close()


def per_job(sent: Counter[str]) -> dict[str, float]:
    return {label: count / JOBS for label, count in sent.items()}


def test_a_write_costs_one_round_trip_to_admit_and_one_to_finish(make_path: Any) -> None:
    """One write at a time, a free slot each time (the hot path), and the PMS telling its own
    limits in headers: admission (enqueue + admit) is one round trip, finishing (release, the
    headers, admit the next) another, and the claim's lease with the request's slot a third.
    Before admission was folded into these calls a write cost 6 (enqueue, admit, reschedule,
    hold, pace, release) and 7 with the PMS's limit headers; before the first request's slot
    came with the claim's lease, 4."""
    path = make_path(pms_headers={"X-RateLimit-Remaining": "99", "X-RateLimit-Limit": "100"})
    path.run(path.submit())  # warm-up: connection, script cache, limits from the job store
    CountingConnection.round_trips.clear()

    for _ in range(JOBS):
        path.run(path.submit())

    assert per_job(CountingConnection.round_trips) == {
        "submit": 1.0,
        "hold": 1.0,
        "finish": 1.0,
    }
    assert len(path.publisher.published) == JOBS + 1
    assert path.pms_limits() == {"x-ratelimit-remaining": "99", "x-ratelimit-limit": "100"}


def test_a_waiting_job_is_admitted_by_the_finish_of_the_one_before(make_path: Any) -> None:
    """With a backlog (concurrency 1, writes arriving while one runs), each job is admitted by
    the finish of the job before it, in the same round trip, with no dispatcher tick. The
    ready set, where a dispatcher learns when to come back should a worker die, is written at
    most once for the whole backlog, not once per call: before, every write and every finish
    that left jobs waiting wrote it."""
    path = make_path(concurrency=1)
    warm_up = [path.submit(), path.submit()]  # loads every script the path runs
    for job_id in warm_up:
        path.run(job_id)
    CountingConnection.round_trips.clear()

    first = path.submit()
    waiting = [path.submit() for _ in range(JOBS - 1)]
    assert path.publisher.published[-1].job_id == first  # the others wait for its slot
    assert path.ready_at_us() is not None  # a dispatcher would come back for them
    for job_id in [first, *waiting]:
        assert path.publisher.published[-1].job_id == job_id  # admitted before it runs
        path.run(job_id)

    assert [job.job_id for job in path.publisher.published][-JOBS:] == [first, *waiting]
    assert CountingConnection.round_trips.pop("reschedule", 0) <= 1
    assert per_job(CountingConnection.round_trips) == {
        "submit": 1.0,
        "hold": 1.0,
        "finish": 1.0,
    }

"""A worker frozen past its lease sends nothing once it wakes: the PMS sees each write once.

A pool process is frozen with SIGSTOP after its claim and before its request (its request is
held back by the integration's pacing, as a busy integration's would be), past its lease. The
job is handed to another worker, which sends it and finishes it. Then the frozen process is
woken with SIGCONT: it must find that its claim lost the lease and stop without sending, so the
sandbox (the judge) records exactly one request for the write.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select
from support.processes import ManagedProcess, pool_children, wait_until
from support.stack import Stack

from pmsq.models.job import Job
from pmsq.workers.flow.keys import IntegrationKeys

#: pmsq logs this when a claim finds its lease gone before a request.
FENCED_LOG = "stopped without sending"


@pytest.fixture
def one_process_worker(stack: Stack) -> Iterator[ManagedProcess]:
    """The only worker left: one pool process, so the job's process is known. Its prefetch is
    one message, held by the running job, so it takes no other message while frozen."""
    for worker in list(stack.workers):
        worker.stop()
    stack.workers.clear()
    worker = stack.start_worker(concurrency=1)
    yield worker
    for child in pool_children(worker.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGCONT)


def job_row(stack: Stack, job_id: str) -> tuple[str, int]:
    with stack.session_factory() as session:
        job = session.scalars(select(Job).where(Job.id == job_id)).one()
        return job.status, job.deliveries


def hold_requests_back(client: redis.Redis, integration_id: str, seconds: float) -> None:
    """Move the integration's next request slot `seconds` ahead, as requests of other jobs
    would: a claimed job then waits in its pacer, between claim and request."""
    seconds_now, micros = client.time()
    key = IntegrationKeys(integration_id).request_tat
    client.set(key, (seconds_now + int(seconds)) * 1_000_000 + micros, px=int(seconds * 1000))


def test_a_worker_frozen_past_its_lease_never_sends_after_waking(
    stack: Stack, one_process_worker: ManagedProcess
) -> None:
    client = redis.Redis.from_url(stack.env["PMSQ_REDIS_URL"])
    headers = stack.token("acme")
    tenant = f"fence{uuid.uuid4().hex[:8]}"
    integration_id = stack.integration(headers, "SANDBOX", tenant)
    hold_requests_back(client, integration_id, 120)
    job_id = stack.write(
        headers, "residents", {"integration_id": integration_id, "last_name": "Curie"}
    ).json()["job_id"]
    wait_until(
        lambda: job_row(stack, job_id) == ("RUNNING", 1),
        30,
        message="job claimed by the first worker",
        details=stack.logs,
    )
    [frozen] = pool_children(one_process_worker.pid)
    os.kill(frozen, signal.SIGSTOP)

    # Past its lease, the job goes to another worker; once it is claimed there, its request
    # is let go.
    stack.start_worker(concurrency=1)
    wait_until(
        lambda: job_row(stack, job_id) == ("RUNNING", 2),
        60,
        message="job claimed again by the second worker",
        details=stack.logs,
    )
    client.delete(IntegrationKeys(integration_id).request_tat)
    assert stack.wait_final(headers, job_id)["write_status"] == "SUCCESS"
    assert len(stack.sandbox_requests(tenant)) == 1

    os.kill(frozen, signal.SIGCONT)
    wait_until(
        lambda: (
            FENCED_LOG in one_process_worker.log_text() or len(stack.sandbox_requests(tenant)) > 1
        ),
        30,
        message="the woken worker stopped or sent",
        details=stack.logs,
    )

    requests = stack.sandbox_requests(tenant)
    assert len(requests) == 1, requests
    assert len(stack.sandbox_records(tenant, "residents")) == 1
    client.close()

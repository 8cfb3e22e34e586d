"""A job whose broker message died with its worker resumes within about one lease.

An idle worker is frozen whole (SIGSTOP of its process group) while it waits on the broker, so
the next message published is handed to it and never processed: the job stays QUEUED,
admitted but never claimed. Another worker must run it once the admission lease lapses, long
before any slow republish sweep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator

import pytest
import redis
from support.processes import ManagedProcess, wait_until
from support.stack import Stack

#: Well under the two minutes a lost message used to wait, well over one lease (4 s in the
#: e2e stack) plus a maintenance pass.
RECOVERY_DEADLINE_S = 40


def waiting_on_the_queue(client: redis.Redis) -> bool:
    return any(c.get("cmd") == "brpop" and "b" in c.get("flags", "") for c in client.client_list())


@pytest.fixture
def frozen_worker(stack: Stack) -> Iterator[ManagedProcess]:
    """The only worker, frozen whole while idle; woken again at the end."""
    for worker in list(stack.workers):
        worker.stop()
    stack.workers.clear()
    worker = stack.start_worker(concurrency=1)
    client = redis.Redis.from_url(stack.env["PMSQ_REDIS_URL"])
    # Frozen while blocked on the queue: Redis hands it the next message all the same.
    wait_until(lambda: waiting_on_the_queue(client), 30, message="the worker blocks on BRPOP")
    os.killpg(worker.pid, signal.SIGSTOP)
    client.close()
    yield worker
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGCONT)


def test_a_job_whose_message_died_with_its_worker_resumes_within_a_lease(
    stack: Stack, frozen_worker: ManagedProcess
) -> None:
    headers = stack.token("acme")
    tenant = f"recov{uuid.uuid4().hex[:8]}"
    integration_id = stack.integration(headers, "SANDBOX", tenant)
    job_id = stack.write(
        headers, "residents", {"integration_id": integration_id, "last_name": "Noether"}
    ).json()["job_id"]

    stack.start_worker(concurrency=1)
    outcome = stack.wait_final(headers, job_id, RECOVERY_DEADLINE_S)

    assert outcome["write_status"] == "SUCCESS"
    assert len(stack.sandbox_requests(tenant)) == 1

"""A warm stop (SIGTERM, what Docker and Kubernetes send) of a worker in the middle of a run.

The sandbox answers each create late (the write is applied first, as a slow PMS would), so the
signal lands while PMS requests are in flight and more jobs wait behind them. The worker must
exit promptly having finished its in-flight jobs (or handed them back), with every concurrency
slot released and nothing left RUNNING; a new worker then finishes the rest, each write done once.
"""

from __future__ import annotations

import signal
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from support.processes import wait_until
from support.stack import Stack

from pmsq.models.enums import JobStatus
from pmsq.models.job import Job

#: The PMS's answer time: long enough to catch requests in flight, well within this module's
#: PMS timeout, so the requests in flight at the signal succeed rather than time out.
LATENCY_MS = 2000
PMS_TIMEOUT_S = 10
WRITES = 6
#: A warm stop waits for the running jobs (one PMS answer each), then exits.
EXIT_DEADLINE_S = 30


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """A PMS timeout longer than the injected latency."""
    return {"PMSQ_PMS_TIMEOUT_S": str(PMS_TIMEOUT_S)}


def in_flight(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    return [r for r in stack.sandbox_requests(tenant) if r["ended_at"] is None]


def job_statuses(stack: Stack, integration_id: str) -> dict[str, str]:
    with stack.session_factory() as session:
        rows = session.execute(
            select(Job.id, Job.status).where(Job.integration_id == integration_id)
        ).all()
    return {job_id: status for job_id, status in rows}


def jobs_in_flight(stack: Stack, headers: dict[str, str], integration_id: str) -> int:
    response = stack.http.get(
        f"{stack.api_url}/v1/admin/integrations/{integration_id}/rate-limits/", headers=headers
    )
    assert response.status_code == 200, response.text
    return int(response.json()["results"]["usage"]["jobs_in_flight"])


def test_sigterm_finishes_or_returns_in_flight_jobs_and_releases_their_slots(
    stack: Stack,
) -> None:
    headers = stack.token("acme")
    tenant = f"warm{uuid.uuid4().hex[:8]}"
    integration_id = stack.integration(headers, "SANDBOX", tenant)
    stack.fault(
        tenant=tenant, method="POST", model="residents", kind="latency", latency_ms=LATENCY_MS
    )
    job_ids = []
    for n in range(WRITES):
        response = stack.write(
            headers, "residents", {"integration_id": integration_id, "last_name": f"Warm{n}"}
        )
        assert response.status_code == 200, response.text
        job_ids.append(response.json()["job_id"])
    wait_until(
        lambda: in_flight(stack, tenant), 30, message="a PMS request in flight", details=stack.logs
    )

    worker = stack.workers[-1]
    stopped_at = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)  # the main process only: Celery's warm shutdown
    exit_status = worker.wait_exit(EXIT_DEADLINE_S)
    took_s = time.monotonic() - stopped_at

    assert exit_status == 0, worker.describe()
    assert "warm shutdown" in worker.log_text().lower(), worker.describe()
    # Every request the worker started got its answer: none was cut off mid-way.
    assert not in_flight(stack, tenant), stack.sandbox_requests(tenant)
    statuses = job_statuses(stack, integration_id)
    # Finished, or returned (PENDING / QUEUED, its message back on the broker): not RUNNING.
    running = [job_id for job_id, status in statuses.items() if status == JobStatus.RUNNING]
    assert not running, f"left RUNNING by a warm stop: {statuses}\n{worker.describe()}"
    # Slots: a finished job's is released; only admitted jobs whose messages wait on the
    # broker (QUEUED) may hold one (until they are claimed, or their lease lapses).
    queued = [job_id for job_id, status in statuses.items() if status == JobStatus.QUEUED]
    held = jobs_in_flight(stack, headers, integration_id)
    assert held <= len(queued), f"{held} slots held by a stopped worker: {statuses}"
    finished_early = [j for j in job_ids if statuses[j] == JobStatus.SUCCESS]
    assert finished_early, f"the in-flight jobs were finished, not dropped: {statuses}"
    assert took_s < EXIT_DEADLINE_S

    stack.start_worker()
    outcomes = {job_id: stack.wait_final(headers, job_id) for job_id in job_ids}

    assert {o["write_status"] for o in outcomes.values()} == {"SUCCESS"}, outcomes
    final = job_statuses(stack, integration_id)
    assert set(final.values()) == {JobStatus.SUCCESS}, final
    assert jobs_in_flight(stack, headers, integration_id) == 0
    # Each write reached the PMS exactly once: none was lost and none was repeated.
    records = stack.sandbox_records(tenant, "residents")
    assert sorted(r["last_name"] for r in records) == [f"Warm{n}" for n in range(WRITES)]
    assert {o["created_record_id"] for o in outcomes.values()} == {r["id"] for r in records}
    applied = [r for r in stack.sandbox_requests(tenant) if r.get("applied")]
    assert len(applied) == WRITES, stack.sandbox_requests(tenant)

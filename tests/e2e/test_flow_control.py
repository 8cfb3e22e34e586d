"""The flow-control invariants (README, "Flow control"), judged by the sandbox's request records.

Two worker nodes of two processes each (four processes, as two hosts would run them) share one
Redis; every limit must hold across all of them.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from support.judge import achieved_rate, max_in_flight, max_in_window
from support.processes import wait_until
from support.stack import Stack

from pmsq.models.job import Job

#: Judges timing (rates and caps as the PMS sees them):
#: `make test` runs this module alone, after the rest.
pytestmark = pytest.mark.alone


@pytest.fixture(scope="module")
def four_processes(stack: Stack) -> Stack:
    stack.start_worker(concurrency=2)
    assert len(stack.workers) == 2
    return stack


def tenant() -> str:
    return f"fc{uuid.uuid4().hex[:10]}"


def submit(stack: Stack, headers: dict[str, str], integration_id: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = stack.write(
            headers, "residents", {"integration_id": integration_id, "last_name": f"L{i}"}
        )
        assert response.status_code == 200, response.text
        ids.append(response.json()["job_id"])
    return ids


def wait_all(stack: Stack, headers: dict[str, str], ids: list[str], deadline_s: float) -> None:
    for job_id in ids:
        assert stack.wait_final(headers, job_id, deadline_s)["write_status"] == "SUCCESS"


def starts(requests: list[dict[str, Any]]) -> list[float]:
    return [r["started_at"] for r in requests]


def test_rate_limit_holds_across_processes_and_is_fully_used(four_processes: Stack) -> None:
    stack = four_processes
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(
        headers, "SANDBOX", name, max_request_frequency=5, max_job_concurrency=4
    )
    ids = submit(stack, headers, integration_id, 30)
    wait_all(stack, headers, ids, 60)
    arrivals = starts(stack.sandbox_requests(name))
    assert len(arrivals) == 30
    assert max_in_window(arrivals, 1.0) <= 5
    # Utilisation: with a backlog the integration gets at least 95% of its allowed rate
    # (measured once the backlog stands, past the first few jobs the API was still taking).
    assert achieved_rate(sorted(arrivals)[3:]) >= 0.95 * 5


def test_concurrency_cap_holds_at_the_pms(four_processes: Stack) -> None:
    stack = four_processes
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(
        headers, "SANDBOX", name, max_request_frequency=100, max_job_concurrency=2
    )
    stack.fault(tenant=name, kind="latency", latency_ms=300)
    ids = submit(stack, headers, integration_id, 12)
    wait_all(stack, headers, ids, 60)
    requests = stack.sandbox_requests(name)
    assert len(requests) == 12
    assert max_in_flight(requests) == 2  # never more, and the cap is used


def test_a_backlogged_integration_does_not_hold_up_another(four_processes: Stack) -> None:
    stack = four_processes
    headers = stack.token("acme")
    slow, fast = tenant(), tenant()
    slow_id = stack.integration(
        headers, "SANDBOX", slow, max_request_frequency=1, max_job_concurrency=1
    )
    fast_id = stack.integration(
        headers, "SANDBOX", fast, max_request_frequency=50, max_job_concurrency=4
    )
    submit(stack, headers, slow_id, 300)
    fast_ids = submit(stack, headers, fast_id, 20)
    wait_all(stack, headers, fast_ids, 30)
    # B is done while A has barely started its backlog: nothing of A's stood in B's way.
    assert len(stack.sandbox_requests(fast)) == 20
    assert len(stack.sandbox_requests(slow)) < 30
    usage = stack.http.get(
        f"{stack.api_url}/v1/admin/integrations/{slow_id}/rate-limits/", headers=headers
    ).json()["results"]
    assert usage["usage"]["backlog"] > 250
    assert usage["configured"]["max_request_frequency"] == 1


def test_429_pauses_only_that_integration_and_burns_no_attempt(four_processes: Stack) -> None:
    stack = four_processes
    headers = stack.token("acme")
    paused, other = tenant(), tenant()
    paused_id = stack.integration(headers, "SANDBOX", paused, max_request_frequency=20)
    other_id = stack.integration(headers, "SANDBOX", other, max_request_frequency=20)
    stack.fault(tenant=paused, kind="status", status=429, retry_after_s=2, times=1)
    paused_jobs = submit(stack, headers, paused_id, 3)
    wait_until(lambda: stack.sandbox_requests(paused), 30, message="first request")
    other_jobs = submit(stack, headers, other_id, 3)
    wait_all(stack, headers, paused_jobs + other_jobs, 60)

    paused_requests = stack.sandbox_requests(paused)
    throttled = [r for r in paused_requests if r["status"] == 429]
    assert len(throttled) == 1
    after = [
        r["started_at"] for r in paused_requests if r["started_at"] > throttled[0]["started_at"]
    ]
    assert len(after) == 3 and min(after) >= throttled[0]["ended_at"] + 2.0 - 0.05
    # The other integration was served during the pause.
    assert any(
        r["started_at"] < throttled[0]["ended_at"] + 2.0 for r in stack.sandbox_requests(other)
    )
    with stack.session_factory() as session:
        attempts = session.scalars(select(Job.attempts).where(Job.id.in_(paused_jobs))).all()
        assert sorted(attempts) == [1, 1, 1]


def test_limits_changed_with_put_apply_without_restart(four_processes: Stack) -> None:
    stack = four_processes
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(
        headers, "SANDBOX", name, max_request_frequency=2, max_job_concurrency=1
    )
    ids = submit(stack, headers, integration_id, 16)
    wait_until(lambda: len(stack.sandbox_requests(name)) >= 3, 30, message="three requests")
    changed = stack.http.put(
        f"{stack.api_url}/v1/admin/integrations/{integration_id}/",
        json={"max_request_frequency": 20, "max_job_concurrency": 2},
        headers=headers,
    )
    assert changed.status_code == 200
    wait_all(stack, headers, ids, 60)
    arrivals = sorted(starts(stack.sandbox_requests(name)))
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # Under the old limit no two requests were closer than 0.5 s; under the new one they are.
    assert min(gaps[:2]) >= 0.5 - 0.02
    assert min(gaps[3:]) < 0.25


def test_sigkilled_workers_leases_come_back_within_the_lease(four_processes: Stack) -> None:
    stack = four_processes
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(
        headers, "SANDBOX", name, max_request_frequency=50, max_job_concurrency=2
    )
    stack.fault(tenant=name, kind="latency", latency_ms=2500, times=2)
    ids = submit(stack, headers, integration_id, 6)
    wait_until(
        lambda: len([r for r in stack.sandbox_requests(name) if r["ended_at"] is None]) == 2,
        30,
        message="both slots in flight",
    )
    for worker in list(stack.workers):
        worker.kill()
    stack.workers.clear()
    killed_at = stack.sandbox_requests(name)[-1]["started_at"]
    stack.start_worker(concurrency=2)
    stack.start_worker(concurrency=2)
    wait_all(stack, headers, ids, 60)
    later = [r for r in stack.sandbox_requests(name) if r["started_at"] > killed_at]
    lease_s = float(stack.env["PMSQ_JOB_LEASE_S"])
    # Slots came back within a lease (plus the time to start a worker), and no job was lost.
    assert later and min(r["started_at"] for r in later) - killed_at < lease_s + 15
    assert len(stack.sandbox_records(name, "residents")) == 6

"""Prometheus metrics scraped from the API after a run match what happened."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from support.stack import Stack

#: Judges timing (counts of admissions, which another stack's load changes):
#: `make test` runs this module alone, after the rest.
pytestmark = pytest.mark.alone


def scrape(stack: Stack) -> dict[str, float]:
    response = stack.http.get(f"{stack.api_url}/metrics")
    assert response.status_code == 200
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def scrape_until(
    stack: Stack, done: Callable[[dict[str, float]], bool], timeout_s: float = 30
) -> dict[str, float]:
    """The first scrape `done` accepts, or the last one at the deadline: every process sends
    its counts to Redis at most every PMSQ_METRICS_FLUSH_S, so a scrape lags by up to that."""
    deadline_s = time.monotonic() + timeout_s
    samples = scrape(stack)
    while not done(samples) and time.monotonic() < deadline_s:
        time.sleep(0.1)
        samples = scrape(stack)
    return samples


def test_metrics_count_what_happened(stack: Stack) -> None:
    headers = stack.token("acme")
    name = f"m{uuid.uuid4().hex[:10]}"
    integration_id = stack.integration(headers, "SANDBOX", name)
    before = scrape(stack)
    stack.fault(tenant=name, kind="status", status=429, retry_after_s=1, times=1)
    bodies = [{"last_name": f"L{i}"} for i in range(3)] + [{"first_name": "no last name"}]
    ids = [
        stack.write(headers, "residents", {"integration_id": integration_id, **body}).json()[
            "job_id"
        ]
        for body in bodies
    ]
    statuses = [stack.wait_final(headers, job_id)["write_status"] for job_id in ids]
    assert sorted(statuses) == ["FAILURE", "SUCCESS", "SUCCESS", "SUCCESS"]
    label = f'integration_id="{integration_id}"'
    expected = {
        f'pmsq_job_outcomes_total{{{label},outcome="success"}}': 3,
        f'pmsq_job_outcomes_total{{{label},outcome="failure"}}': 1,
        f'pmsq_job_outcomes_total{{{label},outcome="retry"}}': 1,  # the 429
        f"pmsq_pms_429_total{{{label}}}": 1,
        # Four writes, one admitted twice (after its 429).
        f"pmsq_admissions_total{{{label}}}": 5,
        f"pmsq_backlog_jobs{{{label}}}": 0,
        f"pmsq_jobs_in_flight{{{label}}}": 0,
    }
    after = scrape_until(
        stack, lambda samples: all(samples.get(k) == v for k, v in expected.items())
    )
    assert {k: after.get(k) for k in expected} == expected

    def grew(metric: str) -> float:
        return after.get(metric, 0) - before.get(metric, 0)

    assert grew("pmsq_write_latency_seconds_count") >= 4
    assert grew("pmsq_job_duration_seconds_count") >= 5

"""Prometheus metrics scraped from the API after a run match what happened."""

from __future__ import annotations

import uuid

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
    after = scrape(stack)

    label = f'integration_id="{integration_id}"'
    assert after[f'pmsq_job_outcomes_total{{{label},outcome="success"}}'] == 3
    assert after[f'pmsq_job_outcomes_total{{{label},outcome="failure"}}'] == 1
    assert after[f'pmsq_job_outcomes_total{{{label},outcome="retry"}}'] == 1  # the 429
    assert after[f"pmsq_pms_429_total{{{label}}}"] == 1
    # Four writes, one admitted twice (after its 429).
    assert after[f"pmsq_admissions_total{{{label}}}"] == 5
    assert after[f"pmsq_backlog_jobs{{{label}}}"] == 0
    assert after[f"pmsq_jobs_in_flight{{{label}}}"] == 0

    def grew(metric: str) -> float:
        return after.get(metric, 0) - before.get(metric, 0)

    assert grew("pmsq_write_latency_seconds_count") >= 4
    assert grew("pmsq_job_duration_seconds_count") >= 5

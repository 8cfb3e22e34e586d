"""Answers lost after the PMS applied a write: still exactly one record per write, never merged.

A vendor without idempotency keys (APPFOLIO) behind a PMS that applies a share of the creates
and then answers 502, or drops the connection: every write must end SUCCESS with a record of
its own, and the sandbox must hold exactly one record per write. Half the writes share their
payload with another write, so a read-back that matched on the payload alone would merge them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.stack import Stack

#: Writes per run; pairs of them carry the same payload.
WRITES = 24


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def submit_pairs(stack: Stack, headers: dict[str, str], integration_id: str) -> list[str]:
    job_ids = []
    for i in range(WRITES):
        pair = i // 2
        body = {
            "integration_id": integration_id,
            "last_name": f"Curie-{pair}",
            "email_1": f"family-{pair}@example.com",
        }
        accepted = stack.write(headers, "residents", body)
        assert accepted.status_code == 200, accepted.text
        job_ids.append(accepted.json()["job_id"])
    return job_ids


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "apply_then_status", "status": 502, "probability": 0.25, "seed": 11},
        {"kind": "apply_then_reset", "probability": 0.2, "seed": 5},
    ],
    ids=["apply-then-502", "apply-then-reset"],
)
def test_lost_answers_leave_one_record_per_write(stack: Stack, fault: dict[str, Any]) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "APPFOLIO", name)
    stack.fault(tenant=name, method="POST", model="residents", **fault)

    job_ids = submit_pairs(stack, headers, integration_id)
    outcomes = [stack.wait_final(headers, job_id, deadline_s=120) for job_id in job_ids]

    assert [o["write_status"] for o in outcomes] == ["SUCCESS"] * WRITES, outcomes
    created = [o["created_record_id"] for o in outcomes]
    records = stack.sandbox_records(name, "residents")
    assert len(records) == WRITES, records
    assert sorted(created) == sorted(r["id"] for r in records)
    requests = stack.sandbox_requests(name)
    lost = [r for r in requests if r["method"] == "POST" and r["applied"] and r["status"] != 201]
    assert lost, "the fault fired at least once"
    assert len([r for r in requests if r["applied"]]) == WRITES


def test_a_write_equal_to_an_existing_record_still_creates_its_own(stack: Stack) -> None:
    """Its first request times out and is dropped unapplied: its outcome is unknown, and the
    read-back must not report the older record with the same payload."""
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "APPFOLIO", name)
    body = {"integration_id": integration_id, "last_name": "Curie", "email_1": "m@c.fr"}
    first = stack.wait_final(headers, stack.write(headers, "residents", body).json()["job_id"])
    timeout_ms = int(float(stack.env["PMSQ_PMS_TIMEOUT_S"]) * 1000)
    stack.fault(
        tenant=name,
        method="POST",
        model="residents",
        kind="reset",
        latency_ms=timeout_ms + 1000,
        times=1,
    )

    second = stack.wait_final(headers, stack.write(headers, "residents", body).json()["job_id"])

    records = stack.sandbox_records(name, "residents")
    assert (first["write_status"], second["write_status"]) == ("SUCCESS", "SUCCESS")
    assert [r["id"] for r in records] == [first["created_record_id"], second["created_record_id"]]
    # The timed-out request may still sleep at the sandbox: its status can be pending.
    methods = [(r["method"], r["applied"]) for r in stack.sandbox_requests(name)]
    assert methods == [("POST", True), ("POST", False), ("GET", False), ("POST", True)], methods

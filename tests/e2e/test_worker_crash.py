"""A worker killed with SIGKILL inside a PMS request: the job still ends, and never writes twice.

The sandbox answers the create only after a delay (the write is applied first, as a slow PMS
would), so the kill lands while the request is in flight and its outcome is unknown. The job's
lease expires, a dispatcher hands it out again, and the re-attempt either replays through the
PMS's idempotency key or, for a vendor without one, reads back before writing.
"""

from __future__ import annotations

import os
import signal
import uuid

import pytest
from support.processes import pool_children, wait_until
from support.stack import Stack


def in_flight(stack: Stack, tenant: str) -> bool:
    return any(r["ended_at"] is None for r in stack.sandbox_requests(tenant))


@pytest.mark.parametrize(
    ("vendor", "kill"),
    [("SANDBOX", "whole-worker"), ("APPFOLIO", "whole-worker"), ("SANDBOX", "pool-child")],
)
def test_sigkill_mid_request_ends_final_without_duplicate_write(
    stack: Stack, vendor: str, kill: str
) -> None:
    headers = stack.token("acme")
    tenant = f"crash{uuid.uuid4().hex[:8]}"
    integration_id = stack.integration(headers, vendor, tenant)
    stack.fault(
        tenant=tenant, method="POST", model="residents", kind="latency", latency_ms=1500, times=1
    )
    job_id = stack.write(
        headers,
        "residents",
        {"integration_id": integration_id, "last_name": "Curie", "email_1": "m@c.fr"},
    ).json()["job_id"]
    wait_until(
        lambda: in_flight(stack, tenant), 30, message="PMS request in flight", details=stack.logs
    )
    worker = stack.workers[-1]
    if kill == "whole-worker":
        worker.kill()
        stack.start_worker()
    else:
        children = pool_children(worker.pid)
        assert children, "the worker has pool processes"
        for child in children:
            os.kill(child, signal.SIGKILL)

    outcome = stack.wait_final(headers, job_id)

    records = stack.sandbox_records(tenant, "residents")
    assert len(records) == 1, records
    assert outcome == {
        "write_status": "SUCCESS",
        "errors": [],
        "created_record_id": records[0]["id"],
    }
    requests = stack.sandbox_requests(tenant)
    assert len([r for r in requests if r["applied"]]) == 1, requests
    # The re-attempt happened, and was made safe by the vendor's means.
    if vendor == "APPFOLIO":
        assert [r["method"] for r in requests] == ["POST", "GET"], requests
    else:
        assert [(r["method"], r["replayed"]) for r in requests] == [
            ("POST", False),
            ("POST", True),
        ], requests

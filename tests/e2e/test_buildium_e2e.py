"""A Buildium integration end to end, against the sandbox speaking Buildium.

API -> broker -> worker -> the sandbox's Buildium routes, judged by the sandbox's records and
request log: a lease and residents created on it under Buildium's published rate limit, an
applicant whose notes are a second call in a child job, a lease update read and put whole,
and a full sync reading every model back into the record cache.
"""

from __future__ import annotations

import uuid
from typing import Any

from support.judge import max_in_window
from support.processes import wait_until
from support.stack import Stack

from pmsq.pms.vendors.buildium import RATE_LIMIT_PER_S

CREDENTIALS = {"client_id": "e2e-client", "client_secret": "e2e-secret-0123456789"}


def buildium_tenant(stack: Stack) -> str:
    name = f"bd{uuid.uuid4().hex[:10]}"
    response = stack.http.post(
        f"{stack.sandbox_url}/_sandbox/tenants/{name}/dialect", json={"dialect": "buildium"}
    )
    assert response.status_code == 200, response.text
    return name


def write(stack: Stack, headers: dict[str, str], model: str, body: dict[str, Any],
          record_id: str | None = None) -> str:  # fmt: skip
    accepted = stack.write(headers, model, body, record_id=record_id)
    assert accepted.status_code == 200, accepted.text
    return str(accepted.json()["job_id"])


def succeeded(stack: Stack, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    outcome = stack.wait_final(headers, job_id)
    assert outcome["write_status"] == "SUCCESS", outcome
    return outcome


def pms_paths(stack: Stack, tenant: str) -> list[tuple[str, str]]:
    return [(r["method"], r["path"].split(tenant, 1)[1]) for r in stack.sandbox_requests(tenant)]


def test_buildium_writes_and_sync_on_its_own_wire(stack: Stack) -> None:
    headers = stack.token("acme")
    tenant = buildium_tenant(stack)
    integration_id = stack.integration(
        headers, "BUILDIUM", tenant, credentials=CREDENTIALS,
        max_request_frequency=RATE_LIMIT_PER_S, max_job_concurrency=4,
    )  # fmt: skip
    scope = {"integration_id": integration_id}

    lease = {**scope, "unit_id": "7", "start_date": "2026-01-01", "end_date": "2026-12-31"}
    lease_id = succeeded(stack, headers, write(stack, headers, "leases", lease))[
        "created_record_id"
    ]
    residents = [
        write(stack, headers, "residents", {
            **scope, "first_name": "Ada", "last_name": f"Lovelace{n}", "lease_id": lease_id,
            "address_1": "1 Main St", "phone_1": "(555) 010-0199",
        })
        for n in range(15)
    ]  # fmt: skip
    for job_id in residents:
        succeeded(stack, headers, job_id)
    applicant = {**scope, "first_name": "Grace", "last_name": "Hopper", "notes": "parking?"}
    applicant_id = succeeded(stack, headers, write(stack, headers, "applicants", applicant))[
        "created_record_id"
    ]
    update = {**scope, "end_date": "2027-06-30"}
    succeeded(stack, headers, write(stack, headers, "leases", update, record_id=lease_id))

    # What reached Buildium's routes, and in what shape.
    stored_residents = stack.sandbox_records(tenant, "residents")
    assert len(stored_residents) == 15, pms_paths(stack, tenant)
    assert all(r["Leases"] == [{"Id": int(lease_id)}] for r in stored_residents)
    [note] = stack.sandbox_records(tenant, "applicant_notes")
    assert (note["ApplicantId"], note["Note"]) == (int(applicant_id), "parking?")
    [stored_lease] = stack.sandbox_records(tenant, "leases")
    assert (stored_lease["LeaseFromDate"], stored_lease["LeaseToDate"]) == (
        "2026-01-01", "2027-06-30",
    )  # fmt: skip
    paths = pms_paths(stack, tenant)
    assert ("POST", f"/v1/applicants/{applicant_id}/notes") in paths
    assert paths[-2:] == [
        ("GET", f"/v1/leases/{lease_id}"),
        ("PUT", f"/v1/leases/{lease_id}"),
    ], paths
    # Buildium's published rate limit, as the integration's limit, holds at the PMS.
    arrivals = [r["started_at"] for r in stack.sandbox_requests(tenant)]
    assert max_in_window(arrivals, 1.0) <= RATE_LIMIT_PER_S, sorted(arrivals)

    # A full sync reads every model back, page by page, in unified fields.
    started = stack.http.post(
        f"{stack.api_url}/v1/admin/integrations/{integration_id}/manual-sync", headers=headers
    )
    assert started.status_code == 200, started.text
    execution_id = started.json()["result"]["execution"]["id"]

    def last_execution() -> dict[str, Any] | None:
        status = stack.http.get(
            f"{stack.api_url}/v1/admin/integrations/{integration_id}/sync-status", headers=headers
        ).json()["data"]
        done: dict[str, Any] | None = status["last_execution"]
        return done if done and done["id"] == execution_id else None

    done = wait_until(last_execution, 60, 0.1, message="sync finished", details=stack.logs)
    assert done["status"] == "completed", (done, stack.logs())
    cached = stack.http.get(
        f"{stack.api_url}/v1/residents/", params={**scope, "limit": "100"}, headers=headers
    ).json()["results"]
    assert sorted(r["data"]["last_name"] for r in cached) == sorted(
        f"Lovelace{n}" for n in range(15)
    )
    assert {r["data"]["lease_id"] for r in cached} == {lease_id}
    assert {r["data"]["phone_1"] for r in cached} == {"(555) 010-0199"}
    leases = stack.http.get(f"{stack.api_url}/v1/leases/", params=scope, headers=headers).json()
    assert [r["data"]["end_date"] for r in leases["results"]] == ["2027-06-30"]
    reads = {path for method, path in pms_paths(stack, tenant) if method == "GET"}
    assert {"/v1/leases", "/v1/leases/tenants", "/v1/applicants", "/v1/rentals/units"} <= reads

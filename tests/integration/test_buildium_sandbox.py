"""pmsq's Buildium connector against the sandbox speaking Buildium, as a real process.

The sandbox's request log judges what went over the wire: Buildium's paths and auth, a tenant
created on a lease, an update read then put whole, a sync paged by offset and limit, Buildium's
validation errors naming fields, and faults in its error shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from support.processes import sandbox_server
from support.services import free_port

from pmsq.errors import PmsError, PmsThrottled
from pmsq.pms.connector import Exchange, Step
from pmsq.pms.http_connector import HttpConnector
from pmsq.pms.profiles import CREATE, UPDATE
from pmsq.pms.registry import VENDORS

CREDENTIALS = {"client_id": "sandbox-client", "client_secret": "sandbox-secret-0123"}


class Sandbox:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=5)
        #: What the connectors send with; closed with the fixture.
        self.client = httpx.Client(timeout=5)

    def buildium_tenant(self) -> str:
        tenant = f"b{uuid.uuid4().hex[:10]}"
        response = self.http.post(
            f"/_sandbox/tenants/{tenant}/dialect", json={"dialect": "buildium"}
        )
        assert response.status_code == 200, response.text
        return tenant

    def connector(self, tenant: str, credentials: dict[str, Any] | None = None) -> HttpConnector:
        return VENDORS.get("BUILDIUM").connector(
            base_url=f"{self.url}/t/{tenant}",
            credentials=CREDENTIALS if credentials is None else credentials,
            client=self.client,
        )

    def records(self, tenant: str, model: str) -> list[dict[str, Any]]:
        response = self.http.get("/_sandbox/records", params={"tenant": tenant, "model": model})
        return list(response.json()["records"])

    def requests(self, tenant: str) -> list[dict[str, Any]]:
        response = self.http.get("/_sandbox/requests", params={"tenant": tenant})
        return list(response.json()["requests"])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_server(free_port()) as url:
        sandbox = Sandbox(url)
        yield sandbox
        sandbox.http.close()
        sandbox.client.close()


def create(connector: HttpConnector, model: str, payload: dict[str, Any]) -> str:
    result = connector.execute(Step(model, CREATE, None, payload, "k"), lambda e: None)
    assert result.created_record_id is not None
    return result.created_record_id


LEASE = {"unit_id": "7", "start_date": "2026-01-01", "end_date": "2026-12-31"}
RESIDENT = {
    "first_name": "Ada", "last_name": "Lovelace", "email_1": "ada@example.com",
    "phone_1": "(555) 010-0199", "address_1": "1 Main St", "city": "Boston", "notes": "vip",
}  # fmt: skip


def test_a_resident_is_a_tenant_created_on_a_lease(sandbox: Sandbox) -> None:
    tenant = sandbox.buildium_tenant()
    connector = sandbox.connector(tenant)

    lease_id = create(connector, "leases", LEASE)
    resident_id = create(connector, "residents", {**RESIDENT, "lease_id": lease_id})

    [stored] = sandbox.records(tenant, "residents")
    assert stored["Id"] == int(resident_id)
    assert stored["Leases"] == [{"Id": int(lease_id)}]
    assert stored["PhoneNumbers"] == [{"Number": "(555) 010-0199", "Type": "Cell"}]
    assert stored["Address"] == {
        "AddressLine1": "1 Main St", "City": "Boston", "Country": "UnitedStates",
    }  # fmt: skip
    paths = [
        (r["method"], r["path"].split(tenant, 1)[1], r["model"]) for r in sandbox.requests(tenant)
    ]
    assert paths == [
        ("POST", "/v1/leases", "leases"),
        ("POST", "/v1/leases/tenants", "residents"),
    ]


def test_a_tenant_on_a_lease_that_does_not_exist_is_refused_naming_the_field(
    sandbox: Sandbox,
) -> None:
    connector = sandbox.connector(sandbox.buildium_tenant())

    with pytest.raises(PmsError) as incomplete:
        create(connector, "residents", {"first_name": "A"})
    with pytest.raises(PmsError) as unknown_lease:
        create(connector, "residents", {**RESIDENT, "lease_id": "999"})

    assert incomplete.value.retryable is False and incomplete.value.status_code == 400
    assert "last_name (LastName): The LastName field is required." in incomplete.value.message
    assert "lease_id (LeaseId): The LeaseId field is required." in incomplete.value.message
    assert unknown_lease.value.retryable is False
    assert "lease_id (LeaseId): Lease 999 does not exist." in unknown_lease.value.message


def test_a_lease_update_reads_it_and_puts_it_whole(sandbox: Sandbox) -> None:
    tenant = sandbox.buildium_tenant()
    connector = sandbox.connector(tenant)
    lease_id = create(connector, "leases", LEASE)
    exchanges: list[Exchange] = []

    result = connector.execute(
        Step("leases", UPDATE, lease_id, {"end_date": "2027-06-30"}, "k"), exchanges.append
    )

    assert [(e.method, e.response_status) for e in exchanges] == [("GET", 200), ("PUT", 200)]
    [stored] = sandbox.records(tenant, "leases")
    assert (stored["LeaseToDate"], stored["LeaseFromDate"], stored["UnitId"]) == (
        "2027-06-30", "2026-01-01", 7,
    )  # fmt: skip
    assert result.record is not None and result.record["end_date"] == "2027-06-30"


def test_a_sync_pages_by_offset_and_limit_until_the_total(sandbox: Sandbox) -> None:
    tenant = sandbox.buildium_tenant()
    connector = sandbox.connector(tenant)
    made = [
        create(connector, "units", {"name": f"{n}A", "property_id": "3", "address_1": "x"})
        for n in range(5)
    ]

    pages: list[list[dict[str, Any]]] = []
    more = True
    while more:
        records, more = connector.list_page("units", len(pages) + 1, 2, lambda e: None)
        pages.append(records)

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [r["id"] for p in pages for r in p] == made
    lists = [r["path"] for r in sandbox.requests(tenant) if r["method"] == "GET"]
    assert len(lists) == 3


def test_missing_credentials_are_refused_and_limits_are_checked(sandbox: Sandbox) -> None:
    tenant = sandbox.buildium_tenant()
    url = f"{sandbox.url}/t/{tenant}/v1/leases"

    unauthenticated = sandbox.http.get(url)
    too_many = sandbox.http.get(
        url,
        params={"limit": "1001"},
        headers={"x-buildium-client-id": "a", "x-buildium-client-secret": "b"},
    )

    assert unauthenticated.status_code == 401
    assert too_many.status_code == 400
    assert too_many.json()["Errors"][0]["Key"] == "limit"


def test_a_generic_tenant_does_not_answer_buildium_paths(sandbox: Sandbox) -> None:
    connector = sandbox.connector(f"g{uuid.uuid4().hex[:10]}")

    with pytest.raises(PmsError) as raised:
        connector.list_page("leases", 1, 10, lambda e: None)

    assert raised.value.status_code == 404


def test_an_injected_429_throttles_with_its_retry_after(sandbox: Sandbox) -> None:
    tenant = sandbox.buildium_tenant()
    rule = {"tenant": tenant, "model": "leases", "kind": "status", "status": 429,
            "retry_after_s": 2, "times": 1}  # fmt: skip
    assert sandbox.http.post("/_sandbox/faults", json=rule).status_code == 201
    connector = sandbox.connector(tenant)

    with pytest.raises(PmsThrottled) as raised:
        create(connector, "leases", LEASE)

    assert raised.value.retry_after_s == 2.0
    assert sandbox.records(tenant, "leases") == []
    create(connector, "leases", LEASE)  # the rule is used up
    assert len(sandbox.records(tenant, "leases")) == 1


def test_an_applicant_note_lands_on_its_applicant(sandbox: Sandbox) -> None:
    tenant = sandbox.buildium_tenant()
    connector = sandbox.connector(tenant)
    applicant_id = create(connector, "applicants", {"first_name": "Grace", "last_name": "Hopper"})

    note_id = create(connector, "applicant_notes", {"applicant_id": applicant_id, "note": "hi"})
    with pytest.raises(PmsError) as orphan:
        create(connector, "applicant_notes", {"applicant_id": "999", "note": "lost"})

    [note] = sandbox.records(tenant, "applicant_notes")
    assert note == {
        "Id": int(note_id), "Note": "hi", "ApplicantId": int(applicant_id),
        "LastUpdatedDateTime": note["LastUpdatedDateTime"],
    }  # fmt: skip
    assert orphan.value.status_code == 404 and orphan.value.retryable is False


def test_a_re_attempted_note_whose_answer_was_lost_is_found_not_written_twice(
    sandbox: Sandbox,
) -> None:
    tenant = sandbox.buildium_tenant()
    connector = sandbox.connector(tenant)
    applicant_id = create(connector, "applicants", {"first_name": "Grace", "last_name": "Hopper"})
    accepted_at = datetime.now(UTC) - timedelta(seconds=1)
    rule = {"tenant": tenant, "model": "applicant_notes", "kind": "apply_then_status",
            "status": 502, "times": 1}  # fmt: skip
    assert sandbox.http.post("/_sandbox/faults", json=rule).status_code == 201
    payload = {"applicant_id": applicant_id, "note": "parking?"}
    note = Step("applicant_notes", CREATE, None, payload, "k", accepted_at=accepted_at)

    with pytest.raises(PmsError) as lost:
        connector.execute(note, lambda e: None)
    again = connector.execute(replace(note, outcome_unknown=True), lambda e: None)

    assert lost.value.outcome_unknown is True
    [stored] = sandbox.records(tenant, "applicant_notes")
    assert again.created_record_id == str(stored["Id"])
    assert [r["method"] for r in sandbox.requests(tenant)][-2:] == ["POST", "GET"]

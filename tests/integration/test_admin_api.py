"""Contract of the admin API (README, "The API") on SQLite and PostgreSQL alike.

Integrations (paging, partial update, delete guard, the integration fields' validation, write-only
credentials), capabilities, retry-write, job and write logs, and account isolation on every
endpoint. Jobs reach final states through the real `JobRunner` with a scripted connector, so
no worker process is needed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness

from pmsq.errors import PmsError
from pmsq.models.enums import JobStatus, Vendor
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.record import Record
from pmsq.pms.connector import Exchange, Step, StepResult
from pmsq.pms.profiles import FIELD_TYPES, VendorProfile
from pmsq.pms.registry import VENDORS, profile_for
from pmsq.settings import Settings
from pmsq.workers.connectors import IntegrationSnapshot
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.runner import JobRunner

SECRET = "ADMIN-SECRET-" + uuid.uuid4().hex
PASSWORD = "PW-" + uuid.uuid4().hex
MISSING_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[ApiHarness]:
    with api_harness(database_url, session_factory) as harness:
        yield harness


# -- helpers -------------------------------------------------------------------------------


def account(api: ApiHarness) -> dict[str, str]:
    """A token of a fresh account: the database is shared by the module's tests."""
    return api.token(f"acct-{uuid.uuid4().hex[:12]}")


def make_integration(
    api: ApiHarness, headers: dict[str, str], vendor: str = "SANDBOX", **extra: Any
) -> str:
    body = {
        "name": f"{vendor} integration",
        "integration_vendor": vendor,
        "active": True,
        "base_url": "http://127.0.0.1:9/t/x",
        "credentials": (
            {"client_id": SECRET, "client_secret": PASSWORD}
            if vendor == "BUILDIUM"
            else {"api_key": SECRET, "password": PASSWORD}
        ),
        # Fast enough that neither admission spacing nor request pacing holds a test back.
        "max_request_frequency": 1000,
        "max_job_concurrency": 100,
        **extra,
    }
    response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["id"])


def write(
    api: ApiHarness,
    headers: dict[str, str],
    integration_id: str,
    model: str = "residents",
    **f: Any,
) -> str:
    body = {"integration_id": integration_id, **(f or {"last_name": "Lovelace"})}
    response = api.client.post(f"/v1/{model}/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


def fields_of(response: httpx.Response) -> set[str]:
    return {d["field"] for d in response.json()["error"]["details"]["fields"]}


@dataclass
class OneCallConnector:
    """A PMS that answers one request per step with `behaviour`, logging the exchange."""

    behaviour: StepResult | PmsError
    steps: list[Step] = field(default_factory=list)

    def execute(self, step: Step, log: Callable[[Exchange], None]) -> StepResult:
        self.steps.append(step)
        failed = isinstance(self.behaviour, PmsError)
        log(
            Exchange(
                method="POST",
                url=f"https://pms.example/{step.model}",
                request_headers={"Authorization": "[REDACTED]"},
                request_body='{"last_name": "Lovelace"}',
                response_status=422 if failed else 201,
                response_body="last_name is required" if failed else '{"id": "r-1"}',
                duration_ms=3.0,
            )
        )
        if isinstance(self.behaviour, PmsError):
            raise self.behaviour
        return self.behaviour


@dataclass
class FakeConnectors:
    connector: OneCallConnector

    def build(
        self, snapshot: IntegrationSnapshot, before_request: Callable[[], None]
    ) -> tuple[OneCallConnector, VendorProfile]:
        return self.connector, profile_for(snapshot.vendor)


def run_job(
    api: ApiHarness, database_url: str, job_id: str, behaviour: StepResult | PmsError
) -> str:
    """Runs the (QUEUED) job once, as a worker would; returns its status afterwards."""
    settings = Settings(database_url=database_url)
    dispatcher = Dispatcher(api.session_factory, api.publisher, api.flow, settings)
    runner = JobRunner(
        api.session_factory,
        FakeConnectors(OneCallConnector(behaviour)),  # type: ignore[arg-type]
        dispatcher,
        settings,
    )
    status = runner.run(job_id)
    assert status is not None, f"job {job_id} was not QUEUED"
    return status.value


SUCCEED = StepResult(created_record_id="r-1")
FAIL = PmsError("PMS answered 422: last_name is required", retryable=False, status_code=422)


def job_count(api: ApiHarness) -> int:
    with api.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


# -- integrations: list paging --------------------------------------------------------------


def test_list_pages_orders_and_reports_meta(api: ApiHarness) -> None:
    headers = account(api)
    ids = {name: make_integration(api, headers, name=name) for name in ("bravo", "alpha", "delta")}
    make_integration(api, account(api), name="someone else's")
    listed = api.client.get("/v1/admin/integrations/", headers=headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["meta"] == {
        "offset": 0,
        "limit": 100,
        "orderBy": [{"created_at": "desc"}],
        "hasMore": False,
        "total": 3,
    }
    assert [r["id"] for r in body["results"]] == [ids["delta"], ids["alpha"], ids["bravo"]]

    by_name = api.client.get(
        "/v1/admin/integrations/", params={"order-by": "name:desc"}, headers=headers
    ).json()
    assert [r["name"] for r in by_name["results"]] == ["delta", "bravo", "alpha"]
    assert by_name["meta"]["orderBy"] == [{"name": "desc"}]
    ascending = api.client.get(
        "/v1/admin/integrations/", params={"order-by": "name"}, headers=headers
    ).json()
    assert [r["name"] for r in ascending["results"]] == ["alpha", "bravo", "delta"]

    page = api.client.get(
        "/v1/admin/integrations/",
        params={"order-by": "name:asc", "offset": 1, "limit": 1},
        headers=headers,
    ).json()
    assert page["meta"] == {
        "offset": 1,
        "limit": 1,
        "orderBy": [{"name": "asc"}],
        "hasMore": True,
        "total": 3,
    }
    assert [r["name"] for r in page["results"]] == ["bravo"]
    last = api.client.get(
        "/v1/admin/integrations/",
        params={"order-by": "name:asc", "offset": 2, "limit": 1},
        headers=headers,
    ).json()
    assert ([r["name"] for r in last["results"]], last["meta"]["hasMore"]) == (["delta"], False)
    beyond = api.client.get(
        "/v1/admin/integrations/", params={"offset": 10, "limit": 250}, headers=headers
    ).json()
    assert beyond["results"] == [] and beyond["meta"]["total"] == 3
    assert beyond["meta"]["hasMore"] is False


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 251}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"order-by": "password:asc"}, "order-by"),
        ({"order-by": "name:sideways"}, "order-by"),
    ],
    ids=["limit-251", "limit-text", "offset-negative", "unknown-field", "bad-dir"],
)
def test_list_refuses_bad_paging_naming_the_parameter(
    api: ApiHarness, params: dict[str, Any], field: str
) -> None:
    response = api.client.get("/v1/admin/integrations/", params=params, headers=account(api))
    assert response.status_code == 400, response.text
    assert field in fields_of(response)


# -- integrations: get, partial update, delete ----------------------------------------------


def test_put_is_partial(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers, name="before", max_job_concurrency=3)
    before = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers).json()
    updated = api.client.put(
        f"/v1/admin/integrations/{integration_id}/", json={"name": "after"}, headers=headers
    )
    assert updated.status_code == 200, updated.text
    after = updated.json()["result"]
    assert after["name"] == "after"
    unchanged = {k: v for k, v in before["results"].items() if k not in ("name", "updated_at")}
    assert {k: after[k] for k in unchanged} == unchanged
    assert after["updated_at"] >= before["results"]["updated_at"]
    fetched = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    assert fetched.json()["results"] == after


@pytest.mark.parametrize(
    "name",
    [
        "name",
        "integration_vendor",
        "active",
        "is_archived",
        "new_properties_are_enabled",
        "sync_frequency",
        "sync_cadence",
        "max_request_frequency",
        "max_request_cadence",
        "max_job_concurrency",
        "use_custom_sync_schedule",
    ],
)
def test_put_null_for_a_non_nullable_field_is_400_naming_it(api: ApiHarness, name: str) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    before = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers).json()
    response = api.client.put(
        f"/v1/admin/integrations/{integration_id}/", json={name: None}, headers=headers
    )
    assert response.status_code == 400, response.text
    assert name in fields_of(response)
    after = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers).json()
    assert after == before


def test_put_null_custom_schedule_clears_it(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers, custom_sync_schedule=VALID_SCHEDULE)
    response = api.client.put(
        f"/v1/admin/integrations/{integration_id}/",
        json={"custom_sync_schedule": None},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["custom_sync_schedule"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"max_request_frequency": 1, "max_request_cadence": "HOUR"},
        {"max_request_cadence": "DAY"},
        {"max_request_frequency": 59, "max_request_cadence": "HOUR"},
    ],
    ids=["1-per-hour", "cadence-only", "59-per-hour"],
)
def test_put_refuses_a_rate_below_one_per_minute(api: ApiHarness, change: dict[str, Any]) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers, max_request_frequency=1)
    response = api.client.put(
        f"/v1/admin/integrations/{integration_id}/", json=change, headers=headers
    )
    assert response.status_code == 400, response.text
    assert "max_request_frequency" in fields_of(response)
    result = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers).json()
    assert result["results"]["max_request_cadence"] == "SECOND"


def test_put_accepts_exactly_one_per_minute(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers, max_request_frequency=1)
    response = api.client.put(
        f"/v1/admin/integrations/{integration_id}/",
        json={"max_request_frequency": 60, "max_request_cadence": "HOUR"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["max_request_cadence"] == "HOUR"


def test_delete_without_unfinished_jobs_retires_the_integration(
    api: ApiHarness, database_url: str
) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    job_id = write(api, headers, integration_id)
    assert run_job(api, database_url, job_id, SUCCEED) == "SUCCESS"
    deleted = api.client.delete(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"success": True}
    path = f"/v1/admin/integrations/{integration_id}/"
    assert api.client.get(path, headers=headers).status_code == 404
    assert api.client.put(path, json={"name": "x"}, headers=headers).status_code == 404
    assert api.client.delete(path, headers=headers).status_code == 404
    assert api.client.get(f"{path}rate-limits/", headers=headers).status_code == 404
    listed = api.client.get("/v1/admin/integrations/", headers=headers).json()
    assert listed["meta"]["total"] == 0
    before = job_count(api)
    refused = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, "last_name": "X"}, headers=headers
    )
    assert refused.status_code == 404
    assert "integration_id" in fields_of(refused)
    assert api.client.put(
        "/v1/residents/pms-1", json={"integration_id": integration_id, "email_1": "a@b.c"},
        headers=headers,
    ).status_code == 404  # fmt: skip
    assert job_count(api) == before
    # The write's history stays readable.
    status = api.client.get(f"/v1/admin/write-status/{job_id}", headers=headers)
    assert status.json()["write_status"] == "SUCCESS"
    with api.session_factory() as session:
        row = session.get(Integration, integration_id)
        assert row is not None and row.credentials_encrypted is None


def test_delete_with_a_queued_job_is_409(api: ApiHarness, database_url: str) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    job_id = write(api, headers, integration_id)
    with api.session_factory() as session:
        assert session.get(Job, job_id).status == JobStatus.QUEUED  # type: ignore[union-attr]
    refused = api.client.delete(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["fields"]
    assert (
        api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers).status_code
        == 200
    )
    assert run_job(api, database_url, job_id, FAIL) == "FAILURE"
    ok = api.client.delete(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    assert ok.status_code == 200, ok.text


def test_delete_with_a_pending_job_is_409(api: ApiHarness, database_url: str) -> None:
    headers = account(api)
    # One request per minute: the first write is admitted, the second waits PENDING.
    integration_id = make_integration(
        api, headers, max_request_frequency=1, max_request_cadence="MINUTE"
    )
    first = write(api, headers, integration_id)
    second = write(api, headers, integration_id)
    assert run_job(api, database_url, first, SUCCEED) == "SUCCESS"
    with api.session_factory() as session:
        assert session.get(Job, second).status == JobStatus.PENDING  # type: ignore[union-attr]
    refused = api.client.delete(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    assert refused.status_code == 409, refused.text
    assert (
        api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers).status_code
        == 200
    )


# -- integrations: field validation ----------------------------------------------------------

VALID_SCHEDULE: dict[str, Any] = {
    "type": "WEEK_BASED",
    "timezone": "America/New_York",
    "interval": {
        "MONDAY": {
            "slots": [
                {"start": "09:00", "end": "12:00", "sync_frequency": 15, "sync_cadence": "MINUTE"},
                {"start": "12:00", "end": "24:00", "sync_frequency": 1, "sync_cadence": "HOUR"},
            ]
        },
        "SUNDAY": {"slots": []},
    },
}


def schedule_with(
    slots: list[dict[str, Any]] | None = None, day: str = "MONDAY", timezone: str = "UTC"
) -> dict[str, Any]:
    return {
        "type": "WEEK_BASED",
        "timezone": timezone,
        "interval": {
            day: {
                "slots": slots
                if slots is not None
                else [
                    {"start": "09:00", "end": "10:00", "sync_frequency": 1, "sync_cadence": "HOUR"}
                ]
            }
        },
    }


def slot(start: str, end: str, cadence: str = "HOUR") -> dict[str, Any]:
    return {"start": start, "end": end, "sync_frequency": 1, "sync_cadence": cadence}


#: (field values, the field the refusal must name: a detail's field equals it or starts with it)
INVALID_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("sync_frequency-0", {"sync_frequency": 0}, "sync_frequency"),
    ("sync_frequency-text", {"sync_frequency": "often"}, "sync_frequency"),
    ("sync_cadence-bad", {"sync_cadence": "FORTNIGHT"}, "sync_cadence"),
    ("sync_cadence-lower", {"sync_cadence": "hour"}, "sync_cadence"),
    ("max_request_frequency-0", {"max_request_frequency": 0}, "max_request_frequency"),
    ("max_request_frequency-0.5", {"max_request_frequency": 0.5}, "max_request_frequency"),
    ("max_request_cadence-bad", {"max_request_cadence": "YEAR"}, "max_request_cadence"),
    ("max_job_concurrency-0", {"max_job_concurrency": 0}, "max_job_concurrency"),
    ("max_job_concurrency-101", {"max_job_concurrency": 101}, "max_job_concurrency"),
    ("integration_vendor-bad", {"integration_vendor": "NOPE"}, "integration_vendor"),
    ("name-empty", {"name": ""}, "name"),
    ("base_url-ftp", {"base_url": "ftp://x"}, "base_url"),
    ("unknown-field", {"surprise": True}, "surprise"),
    (
        "timezone-bad",
        {"custom_sync_schedule": schedule_with(timezone="Mars/Olympus_Mons")},
        "custom_sync_schedule.timezone",
    ),
    (
        "weekday-unknown",
        {"custom_sync_schedule": schedule_with(day="FUNDAY")},
        "custom_sync_schedule.interval",
    ),
    (
        "type-bad",
        {"custom_sync_schedule": {**schedule_with(), "type": "DAY_BASED"}},
        "custom_sync_schedule.type",
    ),
    (
        "slot-25h",
        {"custom_sync_schedule": schedule_with([slot("25:00", "26:00")])},
        "custom_sync_schedule.interval.MONDAY.slots.0",
    ),
    (
        "slot-end-before-start",
        {"custom_sync_schedule": schedule_with([slot("10:00", "09:00")])},
        "custom_sync_schedule.interval.MONDAY.slots.0",
    ),
    (
        "slot-empty",
        {"custom_sync_schedule": schedule_with([slot("10:00", "10:00")])},
        "custom_sync_schedule.interval.MONDAY.slots.0",
    ),
    (
        "slots-overlap",
        {"custom_sync_schedule": schedule_with([slot("09:00", "11:00"), slot("10:30", "12:00")])},
        "custom_sync_schedule.interval.MONDAY",
    ),
    (
        "slot-cadence-bad",
        {"custom_sync_schedule": schedule_with([slot("09:00", "10:00", cadence="EON")])},
        "custom_sync_schedule.interval.MONDAY.slots.0.sync_cadence",
    ),
    (
        "slot-frequency-0",
        {
            "custom_sync_schedule": schedule_with(
                [{"start": "09:00", "end": "10:00", "sync_frequency": 0, "sync_cadence": "HOUR"}]
            )
        },
        "custom_sync_schedule.interval.MONDAY.slots.0.sync_frequency",
    ),
]


@pytest.mark.parametrize(
    ("values", "field"),
    [case[1:] for case in INVALID_CREATES],
    ids=[case[0] for case in INVALID_CREATES],
)
def test_create_refuses_each_invalid_value_naming_its_field(
    api: ApiHarness, values: dict[str, Any], field: str
) -> None:
    headers = account(api)
    body = {"name": "n", "integration_vendor": "SANDBOX", **values}
    response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    named = fields_of(response)
    assert any(f == field or f.startswith(field + ".") for f in named), (field, named)
    assert api.client.get("/v1/admin/integrations/", headers=headers).json()["meta"]["total"] == 0


@pytest.mark.parametrize(
    "rate",
    [
        {"max_request_frequency": 1, "max_request_cadence": "HOUR"},
        {"max_request_cadence": "DAY"},
    ],
    ids=["1-per-hour", "default-1-per-day"],
)
def test_create_refuses_a_rate_below_one_per_minute_naming_max_request_frequency(
    api: ApiHarness, rate: dict[str, Any]
) -> None:
    body = {"name": "n", "integration_vendor": "SANDBOX", **rate}
    response = api.client.post("/v1/admin/integrations/", json=body, headers=account(api))
    assert response.status_code == 400, response.text
    assert "one request per minute" in response.json()["error"]["message"]
    assert "max_request_frequency" in fields_of(response)


def test_create_applies_defaults_and_accepts_a_valid_schedule(api: ApiHarness) -> None:
    headers = account(api)
    response = api.client.post(
        "/v1/admin/integrations/",
        json={
            "name": "n",
            "integration_vendor": "BUILDIUM",
            "custom_sync_schedule": VALID_SCHEDULE,
            "use_custom_sync_schedule": True,
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert (result["sync_frequency"], result["sync_cadence"]) == (12, "HOUR")
    assert (result["max_request_frequency"], result["max_request_cadence"]) == (1, "SECOND")
    assert result["max_job_concurrency"] == 1
    assert result["custom_sync_schedule"] == VALID_SCHEDULE
    assert result["use_custom_sync_schedule"] is True
    assert result["has_credentials"] is False
    for boundary in (1, 100):
        ok = api.client.post(
            "/v1/admin/integrations/",
            json={"name": "n", "integration_vendor": "SANDBOX", "max_job_concurrency": boundary},
            headers=headers,
        )
        assert ok.status_code == 200, ok.text
    per_minute = api.client.post(
        "/v1/admin/integrations/",
        json={
            "name": "n",
            "integration_vendor": "SANDBOX",
            "max_request_frequency": 1,
            "max_request_cadence": "MINUTE",
        },
        headers=headers,
    )
    assert per_minute.status_code == 200, per_minute.text


# -- credentials are write-only -------------------------------------------------------------


def test_credentials_are_never_returned(api: ApiHarness) -> None:
    headers = account(api)
    created = api.client.post(
        "/v1/admin/integrations/",
        json={
            "name": "n",
            "integration_vendor": "SANDBOX",
            "credentials": {"api_key": SECRET, "password": PASSWORD},
        },
        headers=headers,
    )
    integration_id = created.json()["result"]["id"]
    new_secret = "ROTATED-" + uuid.uuid4().hex
    path = f"/v1/admin/integrations/{integration_id}/"
    responses = [
        created,
        api.client.get(path, headers=headers),
        api.client.get("/v1/admin/integrations/", headers=headers),
        api.client.put(path, json={"credentials": {"api_key": new_secret}}, headers=headers),
        api.client.put(path, json={"name": "renamed"}, headers=headers),
        api.client.get(f"{path}rate-limits/", headers=headers),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert SECRET not in response.text and PASSWORD not in response.text
        assert new_secret not in response.text
        assert '"credentials"' not in response.text
    assert responses[1].json()["results"]["has_credentials"] is True
    with api.session_factory() as session:
        stored = session.get(Integration, integration_id)
        assert stored is not None and stored.credentials_encrypted is not None
        raw = bytes(stored.credentials_encrypted)
        for secret in (SECRET, PASSWORD, new_secret):
            assert secret.encode() not in raw
    cleared = api.client.put(path, json={"credentials": None}, headers=headers)
    assert cleared.status_code == 200 and cleared.json()["result"]["has_credentials"] is False


# -- capabilities ---------------------------------------------------------------------------


def test_capabilities_list_every_vendor_with_a_profile(api: ApiHarness) -> None:
    headers = account(api)
    response = api.client.get("/v1/admin/capabilities", headers=headers)
    assert response.status_code == 200, response.text
    vendors = response.json()["vendors"]
    assert set(vendors) == set(VENDORS.names())
    for name, entry in vendors.items():
        profile = profile_for(name)
        assert set(entry["models"]) == set(profile.models)
        assert entry["supports_idempotency_key"] == profile.supports_idempotency_key
    one = api.client.get("/v1/admin/capabilities/BUILDIUM", headers=headers)
    assert one.status_code == 200
    assert one.json() == {"vendor": "BUILDIUM", **vendors["BUILDIUM"]}
    assert api.client.get("/v1/admin/capabilities/buildium", headers=headers).json() == one.json()
    assert {vendor.value for vendor in Vendor} <= set(vendors)  # every vendor has a profile
    for unknown in ("NOPE", "SPACESHIP"):
        missing = api.client.get(f"/v1/admin/capabilities/{unknown}", headers=headers)
        assert missing.status_code == 404, (unknown, missing.text)
        assert set(missing.json()) == {"error"}
    assert api.client.get("/v1/admin/capabilities").status_code == 401


def sample_value(name: str, nested: bool) -> Any:
    if nested:
        return [{"email_1": "c@example.com"}]
    kinds = FIELD_TYPES.get(name, (str,))
    return 2 if int in kinds else "x"


def test_capabilities_agree_with_the_write_validator(api: ApiHarness) -> None:
    headers = account(api)
    vendors = api.client.get("/v1/admin/capabilities", headers=headers).json()["vendors"]
    refused: list[str] = []
    for vendor, entry in vendors.items():
        integration_id = make_integration(api, headers, vendor)
        nested = profile_for(vendor).models
        all_models = {m for e in vendors.values() for m in e["models"]}
        for model in sorted(all_models):
            listed = entry["models"].get(model)
            for action in ("CREATE", "UPDATE"):
                path = f"/v1/{model}/" if action == "CREATE" else f"/v1/{model}/pms-1"
                send = api.client.post if action == "CREATE" else api.client.put
                if listed is None or action not in listed["actions"]:
                    body = {"integration_id": integration_id}
                    answer = send(path, json=body, headers=headers)
                    if answer.status_code != 400:
                        refused.append(f"{vendor} {action} {model}: unlisted but {answer}")
                    continue
                for name in listed["fields"]:
                    value = sample_value(name, name in nested[model].nested)
                    body = {"integration_id": integration_id, name: value}
                    answer = send(path, json=body, headers=headers)
                    if answer.status_code != 200:
                        refused.append(f"{vendor} {action} {model}.{name}: {answer.text}")
                # A field the capabilities do not list is refused as unknown.
                body = {"integration_id": integration_id, "not_a_listed_field": "x"}
                answer = send(path, json=body, headers=headers)
                if "not_a_listed_field" not in (
                    fields_of(answer) if answer.status_code == 400 else set()
                ):
                    refused.append(f"{vendor} {action} {model}: unlisted field got {answer.text}")
    assert refused == []


# -- retry-write ----------------------------------------------------------------------------


def test_retry_write_of_a_pending_write_is_409(api: ApiHarness) -> None:
    headers = account(api)
    job_id = write(api, headers, make_integration(api, headers))
    before = job_count(api)
    response = api.client.post(f"/v1/admin/retry-write/{job_id}", headers=headers)
    assert response.status_code == 409, response.text
    assert "PENDING" in response.json()["error"]["message"]
    assert job_count(api) == before


def test_retry_write_of_unknown_or_foreign_write_is_404(api: ApiHarness, database_url: str) -> None:
    headers, other = account(api), account(api)
    job_id = write(api, headers, make_integration(api, headers))
    assert run_job(api, database_url, job_id, FAIL) == "FAILURE"
    before = job_count(api)
    for caller, target in ((headers, MISSING_ID), (other, job_id), (other, MISSING_ID)):
        response = api.client.post(f"/v1/admin/retry-write/{target}", headers=caller)
        assert response.status_code == 404, response.text
    assert job_count(api) == before
    # The owner still can, exactly once; a SUCCESS write cannot.
    retried = api.client.post(f"/v1/admin/retry-write/{job_id}", headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["success"] is True
    new_id = retried.json()["job_id"]
    assert api.client.post(f"/v1/admin/retry-write/{job_id}", headers=headers).status_code == 409
    assert run_job(api, database_url, new_id, SUCCEED) == "SUCCESS"
    assert api.client.post(f"/v1/admin/retry-write/{new_id}", headers=headers).status_code == 409


def test_retry_of_a_child_job_id_is_404(api: ApiHarness, database_url: str) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers, "SANDBOX")
    root = write(
        api, headers, integration_id, "applicants",
        last_name="Hopper", contacts=[{"phone_1": "555-0100"}],
    )  # fmt: skip
    assert run_job(api, database_url, root, SUCCEED) == "SUCCESS"
    with api.session_factory() as session:
        child = session.scalars(select(Job.id).where(Job.parent_job_id == root)).one()
    assert run_job(api, database_url, child, FAIL) == "FAILURE"
    status = api.client.get(f"/v1/admin/write-status/{root}", headers=headers).json()
    assert status["write_status"] == "PARTIAL_SUCCESS"
    response = api.client.post(f"/v1/admin/retry-write/{child}", headers=headers)
    assert response.status_code == 404, response.text


# -- logs -----------------------------------------------------------------------------------


@dataclass
class LoggedWrites:
    headers: dict[str, str]
    a: str
    b: str
    failed: str
    succeeded: str
    pending: str
    update: str


@pytest.fixture
def logged(api: ApiHarness, database_url: str) -> LoggedWrites:
    """Four writes of one account on two integrations: FAILURE, SUCCESS, PENDING (all
    residents CREATE on A, except the applicants CREATE on B) and an UPDATE on A."""
    headers = account(api)
    a, b = make_integration(api, headers, name="A"), make_integration(api, headers, name="B")
    failed = write(api, headers, a)
    succeeded = write(api, headers, a)
    pending = write(api, headers, b, "applicants", last_name="Curie")
    response = api.client.put(
        "/v1/residents/pms-9", json={"integration_id": a, "email_1": "x@y.z"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert run_job(api, database_url, failed, FAIL) == "FAILURE"
    assert run_job(api, database_url, succeeded, SUCCEED) == "SUCCESS"
    return LoggedWrites(headers, a, b, failed, succeeded, pending, response.json()["job_id"])


def ids_of(response: httpx.Response, key: str = "id") -> set[str]:
    assert response.status_code == 200, response.text
    rows = response.json()["results"]
    if isinstance(rows, dict):  # the write logs: {"results": {"logs": [...]}}
        rows = rows["logs"]
    return {row[key] for row in rows}


def test_logs_jobs_filters_and_pages(api: ApiHarness, logged: LoggedWrites) -> None:
    get = lambda **params: api.client.get(  # noqa: E731
        "/v1/admin/logs/jobs/", params=params, headers=logged.headers
    )
    everything = {logged.failed, logged.succeeded, logged.pending, logged.update}
    assert ids_of(get()) == everything
    assert get().json()["meta"]["total"] == 4
    assert get().json()["meta"]["orderBy"] == [{"created_at": "desc"}]
    assert ids_of(get(status="FAILURE")) == {logged.failed}
    assert ids_of(get(status="SUCCESS")) == {logged.succeeded}
    assert ids_of(get(status="QUEUED")) == {logged.pending, logged.update}
    assert ids_of(get(integration_id=logged.b)) == {logged.pending}
    assert ids_of(get(job_type="applicants")) == {logged.pending}
    assert ids_of(get(job_type="residents.UPDATE")) == {logged.update}
    assert ids_of(get(job_type="residents.CREATE", integration_id=logged.a, status="FAILURE")) == {
        logged.failed
    }
    failed = next(r for r in get(status="FAILURE").json()["results"])
    assert failed["job_type"] == "residents.CREATE"
    assert "last_name is required" in failed["error"]
    page = get(limit=3, offset=0, **{"order-by": "created_at:asc"}).json()
    assert page["meta"] == {
        "offset": 0,
        "limit": 3,
        "orderBy": [{"created_at": "asc"}],
        "hasMore": True,
        "total": 4,
    }
    rest = get(limit=3, offset=3, **{"order-by": "created_at:asc"}).json()
    assert rest["meta"]["hasMore"] is False
    assert {r["id"] for r in page["results"] + rest["results"]} == everything
    for params, named in (
        ({"status": "DONE"}, "status"),
        ({"limit": 251}, "limit"),
        ({"order-by": "payload"}, "order-by"),
    ):
        refused = get(**params)
        assert refused.status_code == 400, refused.text
        assert named in fields_of(refused)


def test_logs_writes_filters(api: ApiHarness, logged: LoggedWrites) -> None:
    get = lambda **params: api.client.get(  # noqa: E731
        "/v1/admin/logs/writes/", params=params, headers=logged.headers
    )
    assert ids_of(get(), "job_id") == {
        logged.failed,
        logged.succeeded,
        logged.pending,
        logged.update,
    }
    assert ids_of(
        get(time_range="day", status="PENDING", write_category="CREATE", integration_id=logged.b),
        "job_id",
    ) == {logged.pending}
    assert ids_of(get(status="PENDING"), "job_id") == {logged.pending, logged.update}
    assert ids_of(get(status="FAILURE", time_range="hour"), "job_id") == {logged.failed}
    assert ids_of(get(status="SUCCESS", time_range="month"), "job_id") == {logged.succeeded}
    assert ids_of(get(status="PARTIAL_SUCCESS"), "job_id") == set()
    assert ids_of(get(write_category="UPDATE"), "job_id") == {logged.update}
    assert ids_of(get(write_category="CREATE", integration_id=logged.a), "job_id") == {
        logged.failed,
        logged.succeeded,
    }
    row = next(r for r in get(status="FAILURE").json()["results"]["logs"])
    assert (row["write_status"], row["write_category"], row["model"]) == (
        "FAILURE",
        "CREATE",
        "residents",
    )
    for params, named in (
        ({"time_range": "year"}, "time_range"),
        ({"status": "QUEUED"}, "status"),
        ({"write_category": "DELETE"}, "write_category"),
    ):
        refused = get(**params)
        assert refused.status_code == 400, refused.text
        assert named in fields_of(refused)


def test_job_attempts_and_log_data(api: ApiHarness, logged: LoggedWrites) -> None:
    entries = api.client.get(f"/v1/admin/logs/jobs/{logged.failed}", headers=logged.headers)
    assert entries.status_code == 200, entries.text
    [entry] = entries.json()["results"]
    assert (entry["job_id"], entry["attempt"], entry["attempt_status"]) == (
        logged.failed,
        1,
        "FAILURE",
    )
    [log] = entry["logs"]
    one = api.client.get(f"/v1/admin/job-logs/{log['id']}/", headers=logged.headers)
    assert one.status_code == 200, one.text
    assert {key: one.json()["results"][key] for key in log} == log
    data = api.client.get(f"/v1/admin/job-logs/{log['id']}/data", headers=logged.headers).json()
    assert data["request"]["headers"] == {"Authorization": "[REDACTED]"}
    assert data["response"] == {"status": 422, "headers": {}, "body": "last_name is required"}
    never_ran = api.client.get(f"/v1/admin/logs/jobs/{logged.pending}", headers=logged.headers)
    assert [(e["attempt"], e["logs"]) for e in never_ran.json()["results"]] == [(None, [])]


# -- account isolation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    method: str
    template: str
    kind: str
    body: dict[str, Any] | None = None

    def path(self, ids: dict[str, str]) -> str:
        return self.template.format(**ids)


#: Every endpoint that takes an id, called as another account.
PROBES = [
    Probe("GET", "/v1/admin/write-status/{job}", "job"),
    Probe("POST", "/v1/admin/retry-write/{job}", "job"),
    Probe("GET", "/v1/admin/integrations/{integration}/", "integration"),
    Probe("PUT", "/v1/admin/integrations/{integration}/", "integration", {"name": "mine now"}),
    Probe("DELETE", "/v1/admin/integrations/{integration}/", "integration"),
    Probe("GET", "/v1/admin/integrations/{integration}/rate-limits/", "integration"),
    Probe("GET", "/v1/admin/logs/jobs/{job}", "job"),
    Probe("GET", "/v1/admin/job-logs/{log}/", "log"),
    Probe("GET", "/v1/admin/job-logs/{log}/data", "log"),
    Probe("POST", "/v1/admin/integrations/{integration}/manual-sync", "integration", {}),
    Probe("POST", "/v1/admin/integrations/{integration}/back-sync", "integration", {}),
    Probe("GET", "/v1/admin/integrations/{integration}/job-schedules/", "integration"),
    Probe("GET", "/v1/admin/integrations/{integration}/job-schedules/{schedule}/", "schedule"),
    Probe("GET", "/v1/admin/integrations/{integration}/sync-status", "integration"),
    Probe("GET", "/v1/{model}/{record}", "record"),
    Probe("GET", "/v1/admin/webhooks/{webhook}/", "webhook"),
    Probe("GET", "/v1/admin/webhooks/{webhook}/deliveries/", "webhook"),
    Probe("DELETE", "/v1/admin/webhooks/{webhook}/", "webhook"),
    Probe("GET", "/v1/webhooks/{webhook}", "webhook"),
    Probe("PUT", "/v1/webhooks/{webhook}", "webhook", {"active": True}),
    Probe("DELETE", "/v1/webhooks/{webhook}", "webhook"),
    Probe("GET", "/v1/admin/integrations/{integration}/data-access", "integration"),
    Probe("POST", "/v1/admin/integrations/{integration}/data-access", "integration", {}),
    Probe("GET", "/v1/admin/integrations/{integration}/properties", "integration"),
    Probe(
        "PUT",
        "/v1/admin/integrations/{integration}/properties/{integration}",
        "integration",
        {"enabled": False},
    ),
    Probe(
        "PUT",
        "/v1/admin/integrations/{integration}/properties/batch",
        "integration",
        {"property_configuration_ids": ["p"], "enabled": False},
    ),
    Probe("GET", "/v1/admin/integrations/{integration}/property-lists", "integration"),
    Probe(
        "POST",
        "/v1/admin/integrations/{integration}/property-lists",
        "integration",
        {"x_property_list_id": "1", "enabled": True},
    ),
    Probe(
        "PUT",
        "/v1/admin/integrations/{integration}/property-lists/{integration}",
        "integration",
        {"enabled": True},
    ),
    Probe(
        "PUT",
        "/v1/admin/normalization/leases/status?integration_id={integration}",
        "integration",
        {"mappings": {"Active": "ACTIVE"}, "default_value": "OTHER"},
    ),
    Probe(
        "DELETE",
        "/v1/admin/normalization/leases/status?integration_id={integration}",
        "integration",
    ),
]
#: Endpoints whose id lives in the body (writes) or that list: checked separately below.
COVERED_ELSEWHERE = {
    ("POST", "/v1/{model}/"),
    ("PUT", "/v1/{model}/{record_id}"),
    ("GET", "/v1/admin/integrations/"),
    ("POST", "/v1/admin/integrations/"),
    ("GET", "/v1/admin/logs/jobs/"),
    ("GET", "/v1/admin/logs/writes/"),
    ("GET", "/v1/admin/data-diffs/"),
    ("GET", "/v1/{model}/"),
    ("GET", "/v1/admin/capabilities"),
    ("GET", "/v1/admin/capabilities/{vendor}"),
    ("GET", "/healthz"),
    ("GET", "/v1/admin/webhooks/"),
    ("POST", "/v1/admin/webhooks/"),
    ("GET", "/v1/webhooks/"),
    ("POST", "/v1/webhooks/"),
    # No users: the list is empty for every account and every id is 404.
    ("GET", "/v1/admin/users/"),
    ("GET", "/v1/admin/users/{user_id}"),
    # Takes an integration_id only to check it: the same owned-integration lookup as above.
    ("GET", "/v1/admin/normalization/{model}/{field}"),
    # Probed above at leases/status: other model/field pairs are a 400 before any lookup.
    ("PUT", "/v1/admin/normalization/{model}/{field}"),
    ("DELETE", "/v1/admin/normalization/{model}/{field}"),
    # No token: a signed link only the owner's `.../data` hands out (contract test).
    ("GET", "/v1/admin/job-logs/{log_id}/raw"),
}


def call(api: ApiHarness, probe: Probe, ids: dict[str, str], headers: dict[str, str]) -> Any:
    return api.client.request(probe.method, probe.path(ids), json=probe.body, headers=headers)


def test_isolation_covers_every_endpoint(api: ApiHarness) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    served = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    probed = {(p.method, re.sub(r"\{(\w+)\}", "{x}", p.template.partition("?")[0])) for p in PROBES}
    normalised = {(m, re.sub(r"\{(\w+)\}", "{x}", p)) for m, p in COVERED_ELSEWHERE}
    missing = sorted(
        (m, p) for m, p in served if (m, re.sub(r"\{(\w+)\}", "{x}", p)) not in probed | normalised
    )
    assert missing == [], "endpoints without an isolation probe"


def test_another_accounts_ids_answer_404_and_reveal_nothing(
    api: ApiHarness, database_url: str
) -> None:
    owner, other = account(api), account(api)
    integration_id = make_integration(api, owner)
    job_id = write(api, owner, integration_id)
    assert run_job(api, database_url, job_id, FAIL) == "FAILURE"
    entries = api.client.get(f"/v1/admin/logs/jobs/{job_id}", headers=owner).json()["results"]
    log_id = entries[0]["logs"][0]["id"]
    schedules = api.client.get(
        f"/v1/admin/integrations/{integration_id}/job-schedules/", headers=owner
    )
    assert schedules.status_code == 200, schedules.text
    schedule_id = schedules.json()["results"][0]["id"]
    record_id = cache_record(api, integration_id)
    assert api.client.get(f"/v1/residents/{record_id}", headers=owner).status_code == 200
    webhook = api.client.post(
        "/v1/admin/webhooks/",
        json={"url": "http://127.0.0.1:9/hook", "events": ["JOB_FAILURE"]},
        headers=owner,
    )
    assert webhook.status_code == 201, webhook.text
    real = {
        "job": job_id,
        "integration": integration_id,
        "log": log_id,
        "schedule": schedule_id,
        "record": record_id,
        "webhook": webhook.json()["result"]["id"],
    }
    fake = dict.fromkeys(real, MISSING_ID)
    real["model"] = fake["model"] = "residents"
    before = job_count(api)
    for probe in PROBES:
        foreign = call(api, probe, real, other)
        missing = call(api, probe, fake, other)
        assert foreign.status_code == missing.status_code == 404, (probe, foreign.text)
        if probe.kind == "schedule":
            # Both ids are foreign here; the message may name either.
            continue
        # Identical to the answer for an id that does not exist, but for the id itself.
        assert foreign.json() == missing.json() | {
            "error": {
                **missing.json()["error"],
                "message": missing.json()["error"]["message"].replace(MISSING_ID, real[probe.kind]),
            }
        }, probe
        assert foreign.headers.get("content-length") == missing.headers.get("content-length")
    # Nothing changed on the owner's side.
    assert job_count(api) == before
    mine = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=owner)
    assert mine.status_code == 200 and mine.json()["results"]["name"] != "mine now"
    retried = api.client.post(f"/v1/admin/retry-write/{job_id}", headers=owner)
    assert retried.status_code == 200, "the foreign retry did not use up the owner's retry"


def cache_record(api: ApiHarness, integration_id: str) -> str:
    """A residents record in the read cache, as a sync would leave it."""
    record = Record(integration_id=integration_id, model="residents", pms_id="pms-cached",
                    data={"last_name": "Cached"})  # fmt: skip
    with api.session_factory.begin() as session:
        session.add(record)
        session.flush()
        return record.id


def test_another_accounts_lists_and_writes_reveal_nothing(api: ApiHarness) -> None:
    owner, other = account(api), account(api)
    integration_id = make_integration(api, owner)
    write(api, owner, integration_id)
    record_id = cache_record(api, integration_id)
    lists = (
        "/v1/admin/integrations/",
        "/v1/admin/logs/jobs/",
        "/v1/admin/logs/writes/",
        "/v1/admin/data-diffs/",
        "/v1/residents/",
    )
    assert api.client.get("/v1/residents/", headers=owner).json()["meta"]["total"] == 1
    for path in lists:
        # The integration list takes no integration_id (it would be a 400 naming it).
        by_integration = {"integration_id": integration_id}
        filters = [{}] if path == "/v1/admin/integrations/" else [{}, by_integration]
        for params in filters:
            listed = api.client.get(path, params=params, headers=other)
            assert listed.status_code == 200, listed.text
            results = listed.json()["results"]
            if path == "/v1/admin/logs/writes/":
                results = results["logs"]
            assert results == [] and listed.json()["meta"]["total"] == 0
    before, published = job_count(api), len(api.publisher.published)
    cases = [
        ("POST", "/v1/residents/", {"last_name": "X"}),
        ("PUT", "/v1/residents/pms-1", {"email_1": "a@b.c"}),
        # The cached record's id implies its integration: still another account's.
        ("PUT", f"/v1/residents/{record_id}", {"email_1": "a@b.c"}),
    ]
    for method, path, fields in cases:
        foreign = api.client.request(
            method, path, json={"integration_id": integration_id, **fields}, headers=other
        )
        missing = api.client.request(
            method, path, json={"integration_id": MISSING_ID, **fields}, headers=other
        )
        assert foreign.status_code == missing.status_code == 404, foreign.text
        assert fields_of(foreign) == fields_of(missing)
        assert foreign.json()["error"]["message"] == missing.json()["error"]["message"].replace(
            MISSING_ID, integration_id
        )
    assert (job_count(api), len(api.publisher.published)) == (before, published)


# -- the OpenAPI document --------------------------------------------------------------------

#: The admin paths, as (method, path) in FastAPI's spelling.
DESIGN_ADMIN_OPERATIONS = [
    ("get", "/v1/admin/write-status/{root_job_id}"),
    ("post", "/v1/admin/retry-write/{root_job_id}"),
    ("get", "/v1/admin/logs/jobs/"),
    ("get", "/v1/admin/logs/jobs/{job_id}"),
    ("get", "/v1/admin/job-logs/{log_id}/"),
    ("get", "/v1/admin/job-logs/{log_id}/data"),
    ("get", "/v1/admin/logs/writes/"),
    ("get", "/v1/admin/integrations/"),
    ("post", "/v1/admin/integrations/"),
    ("get", "/v1/admin/integrations/{integration_id}/"),
    ("put", "/v1/admin/integrations/{integration_id}/"),
    ("delete", "/v1/admin/integrations/{integration_id}/"),
    ("post", "/v1/admin/integrations/{integration_id}/manual-sync"),
    ("post", "/v1/admin/integrations/{integration_id}/back-sync"),
    ("get", "/v1/admin/integrations/{integration_id}/job-schedules/"),
    ("get", "/v1/admin/integrations/{integration_id}/job-schedules/{schedule_id}/"),
    ("get", "/v1/admin/integrations/{integration_id}/sync-status"),
    ("get", "/v1/admin/integrations/{integration_id}/rate-limits/"),
    ("get", "/v1/admin/data-diffs/"),
    ("get", "/v1/admin/capabilities"),
    ("get", "/v1/admin/capabilities/{vendor}"),
]
#: What issue 3 requires to exist now.
ISSUE_3_OPERATIONS = {
    op
    for op in DESIGN_ADMIN_OPERATIONS
    if not any(s in op[1] for s in ("sync", "job-schedules", "data-diffs"))
}


def test_openapi_documents_every_admin_operation_with_responses(api: ApiHarness) -> None:
    document = api.client.get("/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    missing = sorted(op for op in ISSUE_3_OPERATIONS if op[0] not in paths.get(op[1], {}))
    assert missing == []
    for method, path in DESIGN_ADMIN_OPERATIONS:
        operation = paths.get(path, {}).get(method)
        if operation is None:
            continue
        responses = operation["responses"]
        success = [code for code in responses if code.startswith(("2", "3"))]
        assert success, (method, path)
        if success[0].startswith("2"):  # a 3xx (job log data) is a Location, no body
            assert "content" in responses[success[0]], (method, path)
        assert operation.get("summary"), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path, "404 undocumented")
        if method in ("post", "put") or path.endswith("/"):
            assert "400" in responses, (method, path, "400 undocumented")
        for code, response in responses.items():
            if code.startswith(("4", "5")) and code != "422":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (method, path, code)


def test_openapi_documents_no_response_the_app_never_sends(api: ApiHarness) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    wrong = sorted(
        (method, path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "HTTPValidationError" in str(operation["responses"].get("422", ""))
    )
    assert wrong == []


# -- found by schemathesis: 5xx on inputs the schema allows ----------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/admin/integrations/", "/v1/admin/logs/jobs/", "/v1/admin/logs/writes/"]
)
def test_a_huge_offset_is_400_not_500(api: ApiHarness, path: str) -> None:
    response = api.client.get(path, params={"offset": 2**70}, headers=account(api))
    assert response.status_code == 400, response.text
    assert "offset" in fields_of(response)


def test_a_sync_frequency_beyond_any_date_is_400_not_500(api: ApiHarness) -> None:
    response = api.client.post(
        "/v1/admin/integrations/",
        json={"name": "n", "integration_vendor": "SANDBOX", "sync_frequency": 2**62},
        headers=account(api),
    )
    assert response.status_code == 400, response.text
    assert "sync_frequency" in fields_of(response)


# Found by schemathesis (execution_view on a status still None); fixed meanwhile.
@pytest.mark.parametrize("kind", ["manual-sync", "back-sync"])
def test_triggering_a_sync_answers_without_a_server_error(api: ApiHarness, kind: str) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    response = api.client.post(
        f"/v1/admin/integrations/{integration_id}/{kind}",
        json={"models_to_sync": []},
        headers=headers,
    )
    assert response.status_code < 500, response.text

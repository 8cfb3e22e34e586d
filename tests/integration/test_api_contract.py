"""Contract of the producer API, on SQLite and PostgreSQL alike (the `database_url` param)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness

from pmsq.models.enums import JobStatus
from pmsq.models.job import Job

SECRET = "s3cr3t-api-key-7f1d"


@pytest.fixture
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[ApiHarness]:
    with api_harness(database_url, session_factory, max_body_bytes=4096) as harness:
        yield harness


def make_integration(api: ApiHarness, headers: dict[str, str], vendor: str, **extra: Any) -> str:
    body = {
        "name": f"{vendor} test",
        "integration_vendor": vendor,
        "active": True,
        "base_url": "http://127.0.0.1:9/t/x",
        "credentials": {"api_key": SECRET},
        **extra,
    }
    response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["id"])


def count_jobs(api: ApiHarness) -> int:
    with api.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def test_create_write_answers_202_stores_root_job_and_publishes(api: ApiHarness) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "SANDBOX")
    body = {"integration_id": integration_id, "last_name": "Lovelace", "notes": "vip"}
    response = api.client.post("/v1/residents/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    assert response.json()["data"] == {"last_name": "Lovelace", "notes": "vip"}
    assert [p.job_id for p in api.publisher.published] == [job_id]
    with api.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.root_job_id, job.status, job.action) == (job_id, JobStatus.QUEUED, "CREATE")
    status = api.client.get(f"/v1/admin/write-status/{job_id}", headers=headers)
    assert status.json() == {"write_status": "PENDING", "errors": [], "created_record_id": None}


def test_unknown_field_is_400_naming_it_unless_ignored(api: ApiHarness) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "RENT_MANAGER")
    body = {"integration_id": integration_id, "last_name": "Hopper", "notes": "x"}
    before = count_jobs(api)
    refused = api.client.post("/v1/residents/", json=body, headers=headers)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "unknown_fields"
    assert error["details"] == {
        "fields": [{"field": "notes", "reason": "unknown field for this PMS"}]
    }
    assert "notes" in error["message"]
    assert count_jobs(api) == before
    accepted = api.client.post(
        "/v1/residents/?ignore_unknown_fields=true", json=body, headers=headers
    )
    assert accepted.status_code == 200
    assert accepted.json()["data"] == {"last_name": "Hopper"}


def test_update_uses_pms_id_with_integration_in_body(api: ApiHarness) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "SANDBOX")
    response = api.client.put(
        "/v1/residents/residents-7",
        json={"integration_id": integration_id, "email_1": "a@b.c"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    with api.session_factory() as session:
        job = session.get(Job, response.json()["job_id"])
        assert job is not None
        assert (job.action, job.target_id) == ("UPDATE", "residents-7")


def test_vendor_workflow_sets_first_step(api: ApiHarness) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "RENT_MANAGER")
    response = api.client.post(
        "/v1/applicants/",
        json={"integration_id": integration_id, "last_name": "X"},
        headers=headers,
    )
    with api.session_factory() as session:
        job = session.get(Job, response.json()["job_id"])
        assert job is not None and job.action == "VALIDATE_THEN_CREATE"


def test_unsupported_action_is_400(api: ApiHarness) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "RENT_MANAGER")
    response = api.client.post(
        "/v1/units/", json={"integration_id": integration_id, "name": "1A"}, headers=headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_operation"


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code", "field"),
    [
        (b"{not json", "application/json", 400, "validation_error", "body"),
        (b"[1, 2]", "application/json", 400, "validation_error", "body"),
        (b"", "application/json", 400, "validation_error", "body"),
        (b'{"last_name": 5}', "application/json", 400, "validation_error", "integration_id"),
        (b"x" * 5000, "application/json", 413, "payload_too_large", None),
    ],
    ids=["malformed", "not-object", "empty", "no-integration", "huge"],
)
def test_bad_bodies_get_clear_4xx_and_store_nothing(
    api: ApiHarness, raw: bytes, content_type: str, status: int, code: str, field: str | None
) -> None:
    headers = api.token("acme")
    before = count_jobs(api)
    response = api.client.post(
        "/v1/residents/", content=raw, headers={**headers, "Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert field in [d["field"] for d in error["details"]["fields"]]
    assert count_jobs(api) == before


@pytest.mark.parametrize("flag", ["maybe", ""])
def test_an_invalid_ignore_unknown_fields_is_400_naming_it(api: ApiHarness, flag: str) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "SANDBOX")
    body = {"integration_id": integration_id, "last_name": "Hopper"}
    response = api.client.post(
        "/v1/residents/", params={"ignore_unknown_fields": flag}, json=body, headers=headers
    )
    assert response.status_code == 400, response.text
    reason = "Input should be a valid boolean, unable to interpret input"
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": f"invalid request: ignore_unknown_fields: {reason}",
            "details": {"fields": [{"field": "ignore_unknown_fields", "reason": reason}]},
        }
    }
    for accepted in ("yes", "1", "TRUE", "off"):
        answer = api.client.post(
            "/v1/residents/", params={"ignore_unknown_fields": accepted}, json=body, headers=headers
        )
        assert answer.status_code == 200, (accepted, answer.text)


def test_a_write_wrong_in_several_ways_is_told_the_first_in_a_fixed_order(
    api: ApiHarness,
) -> None:
    """The body, then the token, then `ignore_unknown_fields`, then the Idempotency-Key."""
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "SANDBOX")
    body = {"integration_id": integration_id, "last_name": "Hopper"}
    bad_flag = {"ignore_unknown_fields": "maybe"}
    no_token = {"Idempotency-Key": ""}

    def fields(response: Any) -> list[str]:
        return [d["field"] for d in response.json()["error"]["details"]["fields"]]

    empty_body = api.client.post("/v1/residents/", params=bad_flag, headers=no_token)
    assert (empty_body.status_code, fields(empty_body)) == (400, ["body"])
    for method, path in (("POST", "/v1/residents/"), ("PUT", "/v1/residents/r-1")):
        anonymous = api.client.request(method, path, params=bad_flag, json=body, headers=no_token)
        assert anonymous.status_code == 401, anonymous.text
        flagged = api.client.request(
            method, path, params=bad_flag, json=body, headers={**headers, **no_token}
        )
        assert (flagged.status_code, fields(flagged)) == (400, ["ignore_unknown_fields"])
        keyed = api.client.request(method, path, json=body, headers={**headers, **no_token})
        assert (keyed.status_code, fields(keyed)) == (400, ["Idempotency-Key"])


def test_wrong_type_names_field(api: ApiHarness) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "SANDBOX")
    response = api.client.post(
        "/v1/units/", json={"integration_id": integration_id, "bedrooms": "two"}, headers=headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == [
        {"field": "bedrooms", "reason": 'must be a number ("2", "1.5")'}
    ]


def test_unknown_model_and_unknown_integration_are_404(api: ApiHarness) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "SANDBOX")
    unknown_model = api.client.post(
        "/v1/spaceships/", json={"integration_id": integration_id}, headers=headers
    )
    assert unknown_model.status_code == 404
    assert "spaceships" in unknown_model.json()["error"]["message"]
    unknown_integration = api.client.post(
        "/v1/residents/", json={"integration_id": "nope", "last_name": "X"}, headers=headers
    )
    assert unknown_integration.status_code == 404
    assert unknown_integration.json()["error"]["details"]["fields"][0]["field"] == "integration_id"


def test_tokens_are_required_and_scoped_to_their_account(api: ApiHarness) -> None:
    acme, other = api.token("acme"), api.token("globex")
    integration_id = make_integration(api, acme, "SANDBOX")
    job_id = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, "last_name": "A"}, headers=acme
    ).json()["job_id"]
    assert api.client.get(f"/v1/admin/write-status/{job_id}").status_code == 401
    bad = {"Authorization": "Bearer pmsq_wrong"}
    assert api.client.get(f"/v1/admin/write-status/{job_id}", headers=bad).status_code == 401
    for real_id, template in (
        (job_id, "/v1/admin/write-status/{}"),
        (integration_id, "/v1/admin/integrations/{}/"),
    ):
        foreign = api.client.get(template.format(real_id), headers=other)
        missing = api.client.get(template.format("no-such-id"), headers=other)
        assert foreign.status_code == missing.status_code == 404
        # Indistinguishable from an id that does not exist: nothing is revealed.
        assert foreign.json() == {
            "error": {
                **missing.json()["error"],
                "message": missing.json()["error"]["message"].replace("no-such-id", real_id),
            }
        }
    foreign_write = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, "last_name": "A"}, headers=other
    )
    assert foreign_write.status_code == 404


def test_integration_validation_names_each_field(api: ApiHarness) -> None:
    headers = api.token("acme")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_job_concurrency": 0}, "max_job_concurrency"),
        ({"max_job_concurrency": 101}, "max_job_concurrency"),
        ({"max_request_frequency": 0.5}, "max_request_frequency"),
        ({"sync_cadence": "FORTNIGHT"}, "sync_cadence"),
        ({"integration_vendor": "NOPE"}, "integration_vendor"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"surprise": 1}, "surprise"),
    ]
    for extra, field in cases:
        body = {"name": "n", "integration_vendor": "SANDBOX", **extra}
        response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
        assert response.status_code == 400, (extra, response.text)
        assert field in {d["field"] for d in response.json()["error"]["details"]["fields"]}, extra
    slow = {
        "name": "n",
        "integration_vendor": "SANDBOX",
        "max_request_frequency": 1,
        "max_request_cadence": "HOUR",
    }
    response = api.client.post("/v1/admin/integrations/", json=slow, headers=headers)
    assert response.status_code == 400
    assert "one request per minute" in response.text


def test_integration_defaults_and_credentials_write_only(api: ApiHarness) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers, "APPFOLIO")
    response = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    result = response.json()["results"]
    assert (result["sync_frequency"], result["sync_cadence"]) == (12, "HOUR")
    assert (result["max_request_frequency"], result["max_request_cadence"]) == (1, "SECOND")
    assert result["max_job_concurrency"] == 1
    assert result["has_credentials"] is True
    assert "credentials" not in result and SECRET not in response.text
    updated = api.client.put(
        f"/v1/admin/integrations/{integration_id}/",
        json={"max_job_concurrency": 7},
        headers=headers,
    )
    assert updated.status_code == 200
    assert updated.json()["result"]["max_job_concurrency"] == 7
    assert updated.json()["result"]["sync_frequency"] == 12


def test_openapi_document_lists_the_endpoints(api: ApiHarness) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/{model}/",
        "/v1/{model}/{record_id}",
        "/v1/admin/write-status/{root_job_id}",
        "/v1/admin/integrations/",
    ):
        assert path in paths

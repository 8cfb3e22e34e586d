"""Idempotency-Key on the write endpoints (DESIGN section 7), on SQLite and PostgreSQL alike.

Same key and body replays the first answer; another body is 422; a key still in flight is
409; keys are per account; a refused (400) request releases its key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness

from api.auth import account_for
from api.services.idempotency import IdempotencyService, fingerprint
from models.idempotency import IdempotencyRecord
from models.job import Job


@pytest.fixture
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[ApiHarness]:
    with api_harness(database_url, session_factory) as harness:
        yield harness


def account(api: ApiHarness) -> dict[str, str]:
    return api.token(f"acct-{uuid.uuid4().hex[:12]}")


def account_id(api: ApiHarness, headers: dict[str, str]) -> str:
    with api.session_factory() as session:
        return account_for(session, headers["Authorization"])


def make_integration(api: ApiHarness, headers: dict[str, str]) -> str:
    body = {
        "name": "idempotent",
        "integration_vendor": "SANDBOX",
        "base_url": "http://127.0.0.1:9/t/x",
        "max_request_frequency": 1000,
        "max_job_concurrency": 100,
    }
    response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["result"]["id"])


def jobs_of(api: ApiHarness, integration_id: str) -> int:
    with api.session_factory() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Job).where(Job.integration_id == integration_id)
            )
            or 0
        )


def published_of(api: ApiHarness, integration_id: str) -> list[str]:
    return [p.job_id for p in api.publisher.published if p.integration_id == integration_id]


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{uuid.uuid4()}"}


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_same_key_and_body_replays_the_first_answer(api: ApiHarness, method: str) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    path = "/v1/residents/" if method == "POST" else "/v1/residents/pms-42"
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    same = {**headers, **key()}
    first = api.client.request(method, path, json=body, headers=same)
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    for _ in range(2):
        again = api.client.request(method, path, json=body, headers=same)
        assert again.status_code == 202, again.text
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
    assert jobs_of(api, integration_id) == 1
    assert published_of(api, integration_id) == [first.json()["job_id"]]


def test_the_same_body_with_keys_reordered_is_the_same_request(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    same = {**headers, **key()}
    first = api.client.post(
        "/v1/residents/",
        content=f'{{"integration_id": "{integration_id}", "last_name": "A", "email": "a@b.c"}}',
        headers={**same, "Content-Type": "application/json"},
    )
    again = api.client.post(
        "/v1/residents/",
        content=f'{{"email":"a@b.c","last_name":"A","integration_id":"{integration_id}"}}',
        headers={**same, "Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["job_id"] == first.json()["job_id"]
    assert jobs_of(api, integration_id) == 1


@pytest.mark.parametrize(
    ("method", "path", "params", "changed"),
    [
        ("POST", "/v1/residents/", None, {"last_name": "Hopper"}),
        ("POST", "/v1/residents/", {"ignore_unknown_fields": "true"}, {}),
        ("POST", "/v1/applicants/", None, {}),
        ("PUT", "/v1/residents/pms-1", None, {}),
    ],
    ids=["other-body", "other-query", "other-path", "other-method"],
)
def test_same_key_with_another_request_is_422_naming_the_header(
    api: ApiHarness,
    method: str,
    path: str,
    params: dict[str, str] | None,
    changed: dict[str, Any],
) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    same = {**headers, **key()}
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    first = api.client.post("/v1/residents/", json=body, headers=same)
    assert first.status_code == 202
    refused = api.client.request(
        method, path, json={**body, **changed}, params=params, headers=same
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert "Idempotency-Key" in {d["field"] for d in error["details"]}
    assert "Idempotent-Replayed" not in refused.headers
    assert jobs_of(api, integration_id) == 1
    assert published_of(api, integration_id) == [first.json()["job_id"]]


def test_a_key_still_in_flight_is_409(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    in_flight = key()
    sha = fingerprint("POST", "/v1/residents/", "", body)
    # A first request with this key has reserved it and not yet answered.
    service = IdempotencyService(api.session_factory)
    assert service.begin(account_id(api, headers), in_flight["Idempotency-Key"], sha) is None
    refused = api.client.post("/v1/residents/", json=body, headers={**headers, **in_flight})
    assert refused.status_code == 409, refused.text
    assert "Idempotency-Key" in {d["field"] for d in refused.json()["error"]["details"]}
    assert jobs_of(api, integration_id) == 0
    assert published_of(api, integration_id) == []


def test_keys_are_per_account(api: ApiHarness) -> None:
    acme, globex = account(api), account(api)
    shared = key()
    answers = []
    for headers in (acme, globex):
        integration_id = make_integration(api, headers)
        response = api.client.post(
            "/v1/residents/",
            json={"integration_id": integration_id, "last_name": "Lovelace"},
            headers={**headers, **shared},
        )
        assert response.status_code == 202, response.text
        assert "Idempotent-Replayed" not in response.headers
        assert jobs_of(api, integration_id) == 1
        answers.append(response.json()["job_id"])
    assert answers[0] != answers[1]
    # Each account's replay is its own first answer.
    for headers, job_id in zip((acme, globex), answers, strict=True):
        status = api.client.get(f"/v1/admin/write-status/{job_id}", headers=headers)
        assert status.status_code == 200


def test_a_key_used_by_another_account_with_another_body_is_not_422(api: ApiHarness) -> None:
    acme, globex = account(api), account(api)
    shared = key()
    first = api.client.post(
        "/v1/residents/",
        json={"integration_id": make_integration(api, acme), "last_name": "A"},
        headers={**acme, **shared},
    )
    second = api.client.post(
        "/v1/residents/",
        json={"integration_id": make_integration(api, globex), "last_name": "B"},
        headers={**globex, **shared},
    )
    assert (first.status_code, second.status_code) == (202, 202), second.text


@pytest.mark.parametrize(
    ("bad", "fixed"),
    [
        ({"last_name": 5}, {"last_name": "Lovelace"}),
        ({"last_name": "Lovelace", "starship": "x"}, {"last_name": "Lovelace"}),
    ],
    ids=["wrong-type", "unknown-field"],
)
def test_a_refused_request_releases_its_key(
    api: ApiHarness, bad: dict[str, Any], fixed: dict[str, Any]
) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    same = {**headers, **key()}
    refused = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, **bad}, headers=same
    )
    assert refused.status_code == 400, refused.text
    with api.session_factory() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(IdempotencyRecord)
                .where(IdempotencyRecord.key == same["Idempotency-Key"])
            )
            == 0
        )
    accepted = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, **fixed}, headers=same
    )
    assert accepted.status_code == 202, accepted.text
    assert "Idempotent-Replayed" not in accepted.headers
    assert jobs_of(api, integration_id) == 1
    replay = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, **fixed}, headers=same
    )
    assert replay.json() == accepted.json()
    assert replay.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("value", ["", "k" * 256], ids=["empty", "too-long"])
def test_an_unusable_key_is_400_naming_the_header(api: ApiHarness, value: str) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    refused = api.client.post(
        "/v1/residents/",
        json={"integration_id": integration_id, "last_name": "A"},
        headers={**headers, "Idempotency-Key": value},
    )
    assert refused.status_code == 400, refused.text
    assert "Idempotency-Key" in {d["field"] for d in refused.json()["error"]["details"]}
    assert jobs_of(api, integration_id) == 0

"""Contract of the webhook admin API, on SQLite and PostgreSQL (the `database_url` param)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness

from pmsq.crypto import CredentialCipher
from pmsq.models.account import Account
from pmsq.models.base import utcnow
from pmsq.models.webhook import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from pmsq.settings import Settings

URL = "https://hooks.example.com/pmsq"


@pytest.fixture
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[ApiHarness]:
    with api_harness(database_url, session_factory) as harness:
        yield harness


def create(api: ApiHarness, headers: dict[str, str], **body: object) -> dict[str, object]:
    payload = {"url": URL, "events": ["WRITE_OPERATION_FAILURE", "JOB_FAILURE"], **body}
    response = api.client.post("/v1/admin/webhooks/", json=payload, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json()["result"])


def test_create_returns_the_secret_once_and_stores_it_encrypted(api: ApiHarness) -> None:
    headers = api.token("acme")
    created = create(api, headers)
    secret = str(created["secret"])
    assert len(secret) >= 40
    assert created["events"] == ["WRITE_OPERATION_FAILURE", "JOB_FAILURE"]
    assert (created["url"], created["active"]) == (URL, True)
    webhook_id = created["id"]
    fetched = api.client.get(f"/v1/admin/webhooks/{webhook_id}/", headers=headers)
    assert fetched.status_code == 200
    assert "secret" not in fetched.json()["result"] and secret not in fetched.text
    listed = api.client.get("/v1/admin/webhooks/", headers=headers)
    assert secret not in listed.text
    with api.session_factory() as session:
        row = session.get(WebhookEndpoint, webhook_id)
        assert row is not None and secret.encode() not in row.secret_encrypted
        cipher = CredentialCipher(Settings().fernet_keys)
        assert cipher.decrypt(row.secret_encrypted) == {"secret": secret}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["WRITE_OPERATION_FAILURE", "DATA_DELETE"]}, "events"),
        ({"events": []}, "events"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"surprise": 1}, "surprise"),
    ],
    ids=["unknown-event", "no-event", "ftp", "garbage-url", "extra-field"],
)
def test_bad_bodies_are_400_naming_the_field(
    api: ApiHarness, body: dict[str, object], field: str
) -> None:
    headers = api.token("acme")
    payload = {"url": URL, "events": ["JOB_FAILURE"], **body}
    response = api.client.post("/v1/admin/webhooks/", json=payload, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]["fields"]]
    if body.get("events"):
        assert "DATA_DELETE" in error["message"]


def test_list_is_paged_and_account_scoped(api: ApiHarness) -> None:
    acme, other = api.token("acme-list"), api.token("globex-list")
    ids = [create(api, acme, url=f"{URL}/{n}")["id"] for n in range(3)]
    create(api, other)
    page = api.client.get(
        "/v1/admin/webhooks/", params={"limit": 2, "order-by": "created_at:asc"}, headers=acme
    ).json()
    assert page["meta"] == {
        "offset": 0, "limit": 2, "orderBy": [{"created_at": "asc"}], "hasMore": True, "total": 3,
    }  # fmt: skip
    rest = api.client.get("/v1/admin/webhooks/", params={"offset": 2}, headers=acme).json()
    assert {r["id"] for r in page["results"] + rest["results"]} == set(ids)
    bad = api.client.get("/v1/admin/webhooks/", params={"order-by": "secret"}, headers=acme)
    assert bad.status_code == 400


def test_another_accounts_webhook_is_404_everywhere(api: ApiHarness) -> None:
    acme, other = api.token("acme-iso"), api.token("globex-iso")
    webhook_id = create(api, acme)["id"]
    for method, path in (
        ("GET", f"/v1/admin/webhooks/{webhook_id}/"),
        ("GET", f"/v1/admin/webhooks/{webhook_id}/deliveries/"),
        ("DELETE", f"/v1/admin/webhooks/{webhook_id}/"),
    ):
        foreign = api.client.request(method, path, headers=other)
        missing = api.client.request(method, path.replace(str(webhook_id), "nope"), headers=other)
        assert foreign.status_code == missing.status_code == 404, (method, path)
        assert foreign.json()["error"]["code"] == "not_found"
    assert api.client.get(f"/v1/admin/webhooks/{webhook_id}/", headers=acme).status_code == 200
    assert api.client.get("/v1/admin/webhooks/").status_code == 401


def test_delete_hides_the_webhook(api: ApiHarness) -> None:
    headers = api.token("acme-del")
    webhook_id = create(api, headers)["id"]
    deleted = api.client.delete(f"/v1/admin/webhooks/{webhook_id}/", headers=headers)
    assert deleted.json() == {"success": True}
    assert api.client.get(f"/v1/admin/webhooks/{webhook_id}/", headers=headers).status_code == 404
    listed = api.client.get("/v1/admin/webhooks/", headers=headers).json()
    assert webhook_id not in [r["id"] for r in listed["results"]]
    again = api.client.delete(f"/v1/admin/webhooks/{webhook_id}/", headers=headers)
    assert again.status_code == 404


def test_deliveries_list_each_attempt(api: ApiHarness) -> None:
    headers = api.token("acme-log")
    webhook_id = str(create(api, headers)["id"])
    now = utcnow()
    with api.session_factory.begin() as session:
        delivery = WebhookDelivery(
            endpoint_id=webhook_id, event="JOB_FAILURE", payload={"trigger": "JOB_FAILURE"},
            status="SUCCESS", attempts=2, last_status_code=200, created_at=now, delivered_at=now,
        )  # fmt: skip
        session.add(delivery)
        session.flush()
        session.add_all(
            [
                WebhookAttempt(delivery_id=delivery.id, attempt=1, status_code=500,
                               error="HTTP 500: oops", created_at=now),
                WebhookAttempt(delivery_id=delivery.id, attempt=2, status_code=200,
                               created_at=now),
            ]
        )  # fmt: skip
    body = api.client.get(f"/v1/admin/webhooks/{webhook_id}/deliveries/", headers=headers).json()
    assert body["meta"]["total"] == 1
    (row,) = body["results"]
    assert (row["event"], row["status"], row["attempts"]) == ("JOB_FAILURE", "SUCCESS", 2)
    assert row["payload"] == {"trigger": "JOB_FAILURE"}
    assert [(a["attempt"], a["status_code"], a["error"]) for a in row["attempt_log"]] == [
        (1, 500, "HTTP 500: oops"),
        (2, 200, None),
    ]


def test_openapi_lists_the_webhook_endpoints(api: ApiHarness) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"post", "get"} <= set(paths["/v1/admin/webhooks/"])
    assert {"get", "delete"} <= set(paths["/v1/admin/webhooks/{webhook_id}/"])
    assert "get" in paths["/v1/admin/webhooks/{webhook_id}/deliveries/"]


def test_every_change_of_an_accounts_webhooks_moves_its_version(api: ApiHarness) -> None:
    # Workers keep an account's endpoints while its webhooks_version stays the one they read
    # with them: a change the version did not follow would go unseen by them.
    headers = api.token("acme-version")

    def version() -> int:
        with api.session_factory() as session:
            stmt = select(Account.webhooks_version).where(Account.name == "acme-version")
            return session.scalars(stmt).one()

    seen = [version()]
    webhook_id = create(api, headers)["id"]
    seen.append(version())
    propexo = {"url": URL, "triggers": ["JOB_SUCCESS"], "active": True}
    created = api.client.post("/v1/webhooks/", json=propexo, headers=headers)
    assert created.status_code == 200, created.text
    seen.append(version())
    updated = api.client.put(
        f"/v1/webhooks/{created.json()['result']['id']}", json={"active": False}, headers=headers
    )
    assert updated.status_code == 200, updated.text
    seen.append(version())
    deleted = api.client.delete(f"/v1/admin/webhooks/{webhook_id}/", headers=headers)
    assert deleted.status_code == 200, deleted.text
    seen.append(version())

    assert seen == sorted(set(seen)), seen

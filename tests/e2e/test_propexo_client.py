"""A Propexo client, unchanged but for its base URL, drives the real stack: it creates an
integration and a webhook with Propexo's request bodies, writes, polls write-status, reads
the logs, and verifies the webhook's `propexo-signature` as Propexo documents it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import propexo
from support.processes import http_receiver, wait_until
from support.stack import Stack

DEADLINE_S = 60
SECRET = "propexo-client-secret-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Quick maintenance passes (webhook delivery)."""
    return {"PMSQ_MAINTENANCE_INTERVAL_S": "0.5"}


@pytest.fixture
def hook_receiver() -> Iterator[tuple[list[tuple[dict[str, str], bytes]], str]]:
    """A webhook endpoint in this process that records every POST."""
    received: list[tuple[dict[str, str], bytes]] = []
    lock = threading.Lock()

    def record(headers: dict[str, str], body: bytes) -> int:
        with lock:
            received.append((headers, body))
        return 200

    with http_receiver(record, "/propexo-hooks") as url:
        yield received, url


def test_a_propexo_client_works_against_pmsq(
    stack: Stack, hook_receiver: tuple[list[tuple[dict[str, str], bytes]], str]
) -> None:
    received, hook_url = hook_receiver
    tenant = f"t{uuid.uuid4().hex[:10]}"
    headers = stack.token(f"propexo-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=10) as api:
        check_client_flow(stack, api, tenant, received, hook_url)


def check_client_flow(
    stack: Stack,
    api: httpx.Client,
    tenant: str,
    received: list[tuple[dict[str, str], bytes]],
    hook_url: str,
) -> None:
    webhook = api.post(
        "/v1/webhooks/",
        json={
            "url": hook_url,
            "triggers": ["WRITE_OPERATION_FAILURE"],
            "secret": SECRET,
            "active": True,
        },
    )
    assert webhook.status_code == 200, webhook.text
    assert propexo.WebhookResponse.model_validate(webhook.json()).result.secret == SECRET

    created = api.post(
        "/v1/admin/integrations/",
        json={
            # Propexo's spelling of the vendor and of its credentials (a production partner
            # token); Rent Manager speaks the sandbox's generic wire format in pmsq so far.
            "integration_vendor": "RENTMANAGER",
            "name": "Propexo client",
            "credentials": {"PartnerToken": "rm-token-0123456789", "companyId": "42"},
            "base_url": f"{stack.sandbox_url}/t/{tenant}",
            "active": True,
        },
    )
    assert created.status_code == 200, created.text
    integration = propexo.IntegrationCreateResponse.model_validate(created.json()).result
    assert integration.vendor == "RENTMANAGER"

    def write(body: dict[str, Any]) -> str:
        response = api.post("/v1/residents/", json={"integration_id": integration.id, **body})
        assert response.status_code == 200, response.text
        return str(response.json()["job_id"])

    def final(job_id: str) -> dict[str, Any]:
        def status() -> dict[str, Any] | None:
            body: dict[str, Any] = api.get(f"/v1/admin/write-status/{job_id}").json()
            return body if body["write_status"] != "PENDING" else None

        return wait_until(status, DEADLINE_S, 0.1, message=f"write {job_id}", details=stack.logs)

    ok, bad = write({"last_name": "Lovelace"}), write({"first_name": "Ada"})
    assert final(ok)["write_status"] == "SUCCESS"
    assert final(bad)["write_status"] == "FAILURE"

    writes = api.get("/v1/admin/logs/writes/", params={"write_category": "residents"})
    logs = propexo.WriteLogsResponse.model_validate(writes.json()).results.logs
    assert {(log.job_id, log.status) for log in logs} == {(ok, "SUCCESS"), (bad, "FAILURE")}
    jobs = api.get(f"/v1/admin/logs/jobs/{ok}")
    assert [j.job_id for j in propexo.JobLogList.model_validate(jobs.json()).results] == [ok]
    log_id = next(log.job_log_id for log in logs if log.job_id == ok)
    redirect = api.get(f"/v1/admin/job-logs/{log_id}/data")
    assert redirect.status_code == 302, redirect.text
    # Propexo asks clients to drop the token on redirect: the link carries its own.
    with httpx.Client(base_url=stack.api_url, timeout=10) as anonymous:
        raw = anonymous.get(redirect.headers["location"])
    assert raw.status_code == 200, raw.text
    assert raw.json()["request"]["method"] == "POST"

    def failure_delivered() -> tuple[dict[str, str], bytes] | None:
        return next(
            (hit for hit in list(received) if json.loads(hit[1])["data"]["job_id"] == bad), None
        )

    headers, body = wait_until(
        failure_delivered, DEADLINE_S, 0.1, message="webhook delivered", details=stack.logs
    )
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["propexo-signature"] == expected
    assert json.loads(body)["trigger"] == "WRITE_OPERATION_FAILURE"

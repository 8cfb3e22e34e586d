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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
from support import propexo
from support.processes import wait_until
from support.services import RedisServer
from support.stack import Stack

#: Redis database of this module's broker (see tests/e2e/conftest.py).
E2E_REDIS_DB = 5
DEADLINE_S = 60
SECRET = "propexo-client-secret-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def stack(database_url: str, redis_server: RedisServer) -> Iterator[Stack]:
    """The real stack with quick maintenance passes (webhook delivery)."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{E2E_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    stack = Stack(database_url, url, env={"PMSQ_MAINTENANCE_INTERVAL_S": "0.5"})
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture
def hook_receiver() -> Iterator[tuple[list[tuple[dict[str, str], bytes]], str]]:
    """A webhook endpoint in this process that records every POST."""
    received: list[tuple[dict[str, str], bytes]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://127.0.0.1:{server.server_address[1]}/propexo-hooks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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

"""Outbound safety end to end: the real API, worker and sandbox, with the operator's setting
empty (the default) and then allowing loopback.

With nothing allowed, an integration aimed at the sandbox on 127.0.0.1 and a webhook aimed at a
receiver there are refused at creation; rows saved before the policy existed (written straight
into the store) make the worker fail the write and the delivery finally, and neither server
records a request. With `127.0.0.0/8` allowed the very same calls work.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from support.outbound import CountingServer, counting_server
from support.processes import wait_until
from support.services import RedisServer
from support.stack import Stack, running_stack

from pmsq.crypto import CredentialCipher
from pmsq.models.account import Account
from pmsq.models.integration import Integration
from pmsq.models.webhook import WebhookEndpoint
from pmsq.settings import Settings

DEADLINE_S = 60
EVENTS = ["WRITE_OPERATION_SUCCESS", "WRITE_OPERATION_FAILURE"]


@contextmanager
def stack_allowing(database_url: str, redis_server: RedisServer, allowed: str) -> Iterator[Stack]:
    """A stack of its own (one at a time) whose operator allows the networks `allowed`."""
    env = {"PMSQ_ALLOWED_OUTBOUND_NETWORKS": allowed, "PMSQ_MAINTENANCE_INTERVAL_S": "0.5"}
    with running_stack(database_url, redis_server.url, env) as stack:
        yield stack


def integration_body(stack: Stack, tenant: str) -> dict[str, Any]:
    return {
        "name": tenant,
        "integration_vendor": "SANDBOX",
        "active": True,
        "base_url": f"{stack.sandbox_url}/t/{tenant}",
        "credentials": {"api_key": f"key-of-{tenant}-0123456789"},
        "max_request_frequency": 50,
    }


def post(stack: Stack, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return stack.http.post(f"{stack.api_url}{path}", json=body, headers=headers)


def deliveries(stack: Stack, headers: dict[str, str], webhook_id: str) -> list[dict[str, Any]]:
    path = f"{stack.api_url}/v1/admin/webhooks/{webhook_id}/deliveries/"
    return list(stack.http.get(path, headers=headers).json()["results"])


def saved_before_the_policy(
    stack: Stack, account_name: str, integration_id: str, base_url: str, hook_url: str
) -> str:
    """Points the integration at `base_url` and adds a webhook to `hook_url`, straight in the
    store, as rows saved before the policy existed would be; returns the webhook's id."""
    cipher = CredentialCipher(Settings().fernet_keys)
    with stack.session_factory.begin() as session:
        account_id = session.scalars(select(Account.id).where(Account.name == account_name)).one()
        integration = session.get(Integration, integration_id)
        assert integration is not None
        integration.base_url = base_url
        endpoint = WebhookEndpoint(
            account_id=account_id,
            url=hook_url,
            events=EVENTS,
            secret_encrypted=cipher.encrypt({"secret": "whsec-0123456789"}),
        )
        session.add(endpoint)
        session.flush()
        return endpoint.id


def write(stack: Stack, headers: dict[str, str], integration_id: str) -> str:
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    response = stack.write(headers, "residents", body)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


def test_with_nothing_allowed_loopback_destinations_are_refused_and_receive_nothing(
    database_url: str, redis_server: RedisServer
) -> None:
    with counting_server() as receiver, stack_allowing(database_url, redis_server, "") as stack:
        name, tenant = f"out-{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:10]}"
        headers = stack.token(name)
        refused = post(stack, "/v1/admin/integrations/", integration_body(stack, tenant), headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["details"]["fields"][0]["field"] == "base_url"
        hook = {"url": receiver.url("/hooks"), "events": EVENTS}
        refused = post(stack, "/v1/admin/webhooks/", hook, headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["details"]["fields"][0]["field"] == "url"

        body = {**integration_body(stack, tenant), "base_url": None}
        created = post(stack, "/v1/admin/integrations/", body, headers)
        assert created.status_code == 200, created.text
        integration_id = created.json()["result"]["id"]
        webhook_id = saved_before_the_policy(
            stack, name, integration_id, f"{stack.sandbox_url}/t/{tenant}", receiver.url("/hooks")
        )
        job_id = write(stack, headers, integration_id)
        status = stack.wait_final(headers, job_id)
        assert status["write_status"] == "FAILURE"
        (error,) = status["errors"]
        assert "destination refused" in error and "127.0.0.1 is loopback" in error
        entries = stack.http.get(f"{stack.api_url}/v1/admin/logs/jobs/{job_id}", headers=headers)
        ((entry),) = entries.json()["results"]
        assert entry["attempts"] == 1, "final: not retried"
        ((log),) = entry["logs"]
        assert log["response_status"] is None and "127.0.0.1 is loopback" in log["error"]

        def delivery_failed() -> dict[str, Any] | None:
            rows = deliveries(stack, headers, webhook_id)
            return rows[0] if rows and rows[0]["status"] == "FAILURE" else None

        row = wait_until(delivery_failed, DEADLINE_S, 0.1, message="delivery failed")
        assert row["attempts"] == 1 and row["last_status_code"] is None
        assert "127.0.0.1 is loopback" in row["last_error"]
        assert stack.sandbox_requests(tenant) == []
        assert_no_connection(receiver)


def assert_no_connection(server: CountingServer) -> None:
    assert server.connections == [] and server.requests == []


def test_with_loopback_allowed_the_same_destinations_work(
    database_url: str, redis_server: RedisServer
) -> None:
    allowed = "127.0.0.0/8"
    with (
        counting_server() as receiver,
        stack_allowing(database_url, redis_server, allowed) as stack,
    ):
        name, tenant = f"out-{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:10]}"
        headers = stack.token(name)
        hook = {"url": receiver.url("/hooks"), "events": EVENTS}
        assert post(stack, "/v1/admin/webhooks/", hook, headers).status_code == 201
        created = post(stack, "/v1/admin/integrations/", integration_body(stack, tenant), headers)
        assert created.status_code == 200, created.text
        job_id = write(stack, headers, created.json()["result"]["id"])
        assert stack.wait_final(headers, job_id)["write_status"] == "SUCCESS"
        assert [r["method"] for r in stack.sandbox_requests(tenant)] == ["POST"]
        wait_until(lambda: receiver.requests, DEADLINE_S, 0.1, message="webhook received")
        assert receiver.requests == [("POST", "/hooks")]

"""No secret anywhere: credentials stored through the API never appear in an API response, a
job log, a process's log output, or any plain-text column of the database.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from support.stack import Stack

from pmsq.models.base import Base


def test_credentials_never_leak(stack: Stack) -> None:
    api_key = f"PMSQ-SECRET-{uuid.uuid4()}"
    password = f"PW-{uuid.uuid4()}"
    secrets = (api_key, password)
    responses: list[str] = []

    def keep(response: httpx.Response) -> None:
        if str(response.url).startswith(stack.api_url):
            response.read()
            responses.append(f"{response.request.method} {response.url}\n{response.headers}\n"
                             f"{response.text}")  # fmt: skip

    stack.http.event_hooks = {"response": [keep]}
    try:
        run_writes_and_read_everything(stack, {"api_key": api_key, "password": password})
    finally:
        stack.http.event_hooks = {"response": []}

    assert len(responses) > 20
    hits: list[str] = []
    for text in responses:
        hits += [f"API response: {text[:200]}" for s in secrets if s in text]

    for process in [stack.sandbox, stack.api, *stack.workers]:
        log = process.log_text()
        hits += [f"{process.name} log" for s in secrets if s in log]
    hits += ["stack.logs()" for s in secrets if s in stack.logs()]
    assert all("ready." in worker.log_text() for worker in stack.workers)

    rows_seen = 0
    with stack.session_factory() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                rows_seen += 1
                for column, value in zip(table.columns, row, strict=True):
                    if isinstance(value, bytes | bytearray | memoryview):
                        raw = bytes(value)
                        hits += [f"{table.name}.{column.name} (bytes)" for s in secrets
                                 if s.encode() in raw]  # fmt: skip
                    else:
                        hits += [f"{table.name}.{column.name}" for s in secrets
                                 if s in str(value)]  # fmt: skip
    assert rows_seen > 0
    assert hits == []


def run_writes_and_read_everything(stack: Stack, credentials: dict[str, str]) -> None:
    headers = stack.token("secretive")
    name = f"t{uuid.uuid4().hex[:10]}"
    integration_id = stack.integration(headers, "SANDBOX", name, credentials=credentials)
    base = f"{stack.api_url}/v1/admin"

    stack.fault(tenant=name, method="POST", model="leases", kind="status", status=503)
    writes = {
        # The PMS accepts it.
        "success": stack.write(
            headers, "residents", {"integration_id": integration_id, "last_name": "Lovelace"}
        ),
        # The PMS refuses it (4xx) and echoes the bad value.
        "rejected": stack.write(
            headers, "residents", {"integration_id": integration_id, "first_name": "NoLast"}
        ),
        # 5xx until the attempts run out.
        "unavailable": stack.write(
            headers,
            "leases",
            {"integration_id": integration_id, "unit_id": "u", "rent_amount_in_cents": 1},
        ),
        # A tree with a failing child.
        "partial": stack.write(
            headers,
            "applicants",
            {
                "integration_id": integration_id,
                "last_name": "Hopper",
                "contacts": [{"email_1": "g@example.com"}, {"phone_1": "not-a-phone"}],
            },
        ),
    }
    outcomes: dict[str, Any] = {}
    for label, accepted in writes.items():
        assert accepted.status_code == 200, accepted.text
        outcomes[label] = stack.wait_final(headers, accepted.json()["job_id"])["write_status"]
    assert outcomes == {
        "success": "SUCCESS",
        "rejected": "FAILURE",
        "unavailable": "FAILURE",
        "partial": "PARTIAL_SUCCESS",
    }
    # A refused request (400) and a retry.
    refused = stack.write(headers, "residents", {"integration_id": integration_id, "bogus": 1})
    assert refused.status_code == 400
    retried = stack.http.post(
        f"{base}/retry-write/{writes['partial'].json()['job_id']}", headers=headers
    )
    assert retried.status_code == 200, retried.text
    stack.wait_final(headers, retried.json()["job_id"])

    # Read everything a client can read.
    stack.http.get(f"{base}/integrations/", headers=headers)
    stack.http.get(f"{base}/integrations/{integration_id}/", headers=headers)
    stack.http.get(f"{base}/integrations/{integration_id}/rate-limits/", headers=headers)
    stack.http.put(
        f"{base}/integrations/{integration_id}/", json={"name": "renamed"}, headers=headers
    )
    stack.http.get(f"{base}/logs/writes/", headers=headers)
    jobs = stack.http.get(f"{base}/logs/jobs/", params={"limit": 250}, headers=headers).json()
    log_ids: list[str] = []
    for job in jobs["results"]:
        entries = stack.http.get(f"{base}/logs/jobs/{job['id']}", headers=headers).json()
        for entry in entries["results"]:
            log_ids += [log["id"] for log in entry["logs"]]
    assert log_ids
    for log_id in log_ids:
        stack.http.get(f"{base}/job-logs/{log_id}/", headers=headers)
        data = stack.http.get(f"{base}/job-logs/{log_id}/data", headers=headers).json()
        assert {k.lower(): v for k, v in data["request"]["headers"].items()}.get(
            "authorization"
        ) == "[REDACTED]"
    stack.http.get(f"{stack.api_url}/openapi.json")

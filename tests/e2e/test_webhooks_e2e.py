"""Webhooks end to end: register through the API, run writes on the real stack, receive the
signed events on a local HTTP server, and see a failed attempt retried and logged."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.processes import http_receiver, wait_until
from support.stack import Stack

from pmsq.workers.webhooks import signing

DEADLINE_S = 60


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> str:
        return self.headers["x-pmsq-event"]

    @property
    def delivery(self) -> str:
        return self.headers["x-pmsq-delivery"]

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A webhook endpoint in this process; answers 500 to the first POST of `fail_first`."""

    fail_first: str = "WRITE_OPERATION_SUCCESS"
    received: list[Received] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            item = Received(headers, body)
            self.received.append(item)
            if item.event == self.fail_first and not self.failed:
                self.failed.add(item.delivery)
                return 500
            return 200

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()
    with http_receiver(state.handle, "/hooks") as url:
        yield state, url


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Quick maintenance passes and webhook retries."""
    return {"PMSQ_MAINTENANCE_INTERVAL_S": "0.5", "PMSQ_WEBHOOK_RETRY_BASE_S": "0.2"}


def test_write_events_arrive_signed_and_a_failed_attempt_is_retried(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    headers = stack.token(f"hooks-{uuid.uuid4().hex[:8]}")
    events = ["WRITE_OPERATION_SUCCESS", "WRITE_OPERATION_FAILURE", "JOB_FAILURE"]
    created = stack.http.post(
        f"{stack.api_url}/v1/admin/webhooks/", json={"url": url, "events": events},
        headers=headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    webhook_id, secret = created.json()["result"]["id"], created.json()["result"]["secret"]

    integration_id = stack.integration(headers, "SANDBOX", f"t{uuid.uuid4().hex[:10]}")
    ok_id = stack.write(
        headers, "residents", {"integration_id": integration_id, "last_name": "Lovelace"}
    ).json()["job_id"]
    bad_id = stack.write(
        headers, "residents", {"integration_id": integration_id, "first_name": "X"}
    ).json()["job_id"]
    ok = stack.wait_final(headers, ok_id)
    assert ok["write_status"] == "SUCCESS"
    assert stack.wait_final(headers, bad_id)["write_status"] == "FAILURE"

    def all_arrived() -> list[Received] | None:
        got = state.snapshot()
        successes = [r for r in got if r.event == "WRITE_OPERATION_SUCCESS"]
        final = {r.event for r in got} >= set(events) and len(successes) >= 2
        return got if final else None

    got = wait_until(all_arrived, DEADLINE_S, 0.1, message="webhooks received", details=stack.logs)
    for item in got:
        timestamp = int(item.headers["x-pmsq-timestamp"])
        assert signing.verify(secret, item.headers["x-pmsq-signature"], timestamp, item.body)
        assert item.headers["content-type"] == "application/json"

    by_event = {r.event: r.payload for r in got}
    success = by_event["WRITE_OPERATION_SUCCESS"]["data"]
    assert (success["job_id"], success["root_job_id"], success["integration_id"]) == (
        ok_id, ok_id, integration_id,
    )  # fmt: skip
    assert success["write_status"] == "SUCCESS"
    assert success["created_record_id"] == ok["created_record_id"] is not None
    failure = by_event["WRITE_OPERATION_FAILURE"]["data"]
    assert (failure["job_id"], failure["write_status"]) == (bad_id, "FAILURE")
    assert len(failure["errors"]) == 1 and "last_name is required" in failure["errors"][0]
    job_failure = by_event["JOB_FAILURE"]["data"]
    assert (job_failure["job_id"], job_failure["root_job_id"]) == (bad_id, bad_id)
    assert "last_name is required" in job_failure["error"]
    assert by_event["JOB_FAILURE"]["trigger"] == "JOB_FAILURE"

    # The delivery whose first POST got a 500 came again, same id, and succeeded.
    (retried,) = state.failed
    assert [r.event for r in got if r.delivery == retried] == ["WRITE_OPERATION_SUCCESS"] * 2
    assert len({r.delivery for r in got}) == 3, "one delivery per event"

    def logged() -> dict[str, Any] | None:
        log = stack.http.get(
            f"{stack.api_url}/v1/admin/webhooks/{webhook_id}/deliveries/", headers=headers
        ).json()
        rows = {row["id"]: row for row in log["results"]}
        done = len(rows) == 3 and all(row["status"] == "SUCCESS" for row in rows.values())
        return rows if done else None

    rows = wait_until(logged, DEADLINE_S, 0.1, message="deliveries logged", details=stack.logs)
    assert [(a["attempt"], a["status_code"]) for a in rows[retried]["attempt_log"]] == [
        (1, 500),
        (2, 200),
    ]
    assert rows[retried]["attempts"] == 2 and rows[retried]["last_status_code"] == 200
    assert secret not in stack.logs()
    fetched = stack.http.get(f"{stack.api_url}/v1/admin/webhooks/{webhook_id}/", headers=headers)
    assert secret not in fetched.text

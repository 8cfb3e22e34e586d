"""Syncs end to end: counts against the sandbox, read-back after writes, backsync exclusion."""

from __future__ import annotations

import uuid
from typing import Any

from support.processes import wait_until
from support.stack import Stack


def tenant() -> str:
    return f"sy{uuid.uuid4().hex[:10]}"


def pms(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = stack.http.request(method, f"{stack.sandbox_url}{path}", json=body)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def sync(stack: Stack, headers: dict[str, str], integration_id: str, kind: str = "manual-sync",
         models: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    response = stack.http.post(
        f"{stack.api_url}/v1/admin/integrations/{integration_id}/{kind}",
        json={"models_to_sync": models} if models else None,
        headers=headers,
    )
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()["result"]["execution"]
    return execution


def finished(
    stack: Stack, headers: dict[str, str], integration_id: str, execution_id: str
) -> dict[str, Any]:
    def last() -> dict[str, Any] | None:
        status = stack.http.get(
            f"{stack.api_url}/v1/admin/integrations/{integration_id}/sync-status", headers=headers
        ).json()["data"]
        done = status["last_execution"]
        return status if done and done["id"] == execution_id else None

    return wait_until(last, 60, 0.1, message="sync finished", details=stack.logs)


def test_sync_counts_follow_the_pms(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "SANDBOX", name)
    ids = [pms(stack, "POST", f"/t/{name}/residents", {"last_name": n})["id"] for n in "ABC"]

    first = sync(stack, headers, integration_id, models=["residents"])
    status = finished(stack, headers, integration_id, first["id"])
    assert status["last_execution"]["status"] == "completed"
    assert status["last_execution"]["counts"] == {
        "insert": 3, "update": 0, "delete": 0, "upserts": 3, "error": 0, "warnings": 0, "total": 3
    }  # fmt: skip
    assert status["current_execution"] is None

    pms(stack, "PUT", f"/t/{name}/residents/{ids[0]}", {"last_name": "A2"})
    pms(stack, "DELETE", f"/t/{name}/residents/{ids[1]}")
    pms(stack, "POST", f"/t/{name}/residents", {"last_name": "D"})
    second = sync(stack, headers, integration_id, models=["residents"])
    counts = finished(stack, headers, integration_id, second["id"])["last_execution"]["counts"]
    assert counts == {
        "insert": 1, "update": 1, "delete": 1, "upserts": 2, "error": 0, "warnings": 0, "total": 3
    }  # fmt: skip

    diffs = stack.http.get(
        f"{stack.api_url}/v1/admin/data-diffs/",
        params={"integration_id": integration_id, "event_type": "UPDATE"},
        headers=headers,
    ).json()["results"]
    assert [(d["model_record_id"], d["data_diff"]) for d in diffs] == [
        (ids[0], {"last_name": {"old": "A", "new": "A2"}})
    ]
    cached = stack.http.get(
        f"{stack.api_url}/v1/residents/", params={"integration_id": integration_id}, headers=headers
    ).json()
    assert sorted(r["data"]["last_name"] for r in cached["results"]) == ["A2", "C", "D"]
    # Every page read was a logged PMS request of the sync's job.
    logs = stack.http.get(
        f"{stack.api_url}/v1/admin/logs/jobs/{second['job_id']}", headers=headers
    ).json()["results"]
    assert [log["method"] for entry in logs for log in entry["logs"]] == ["GET"]


def test_a_write_is_read_back_into_the_cache(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "SANDBOX", name)
    job_id = stack.write(
        headers, "residents", {"integration_id": integration_id, "last_name": "Franklin"}
    ).json()["job_id"]
    created = stack.wait_final(headers, job_id)["created_record_id"]
    record = stack.http.get(f"{stack.api_url}/v1/residents/{created}", headers=headers)
    assert record.status_code == 200
    assert record.json()["result"]["data"] == stack.sandbox_records(name, "residents")[0]
    update = stack.write(
        headers, "residents", {"email_1": "rf@example.com"}, record_id=record.json()["result"]["id"]
    )
    assert update.status_code == 200, update.text
    assert stack.wait_final(headers, update.json()["job_id"])["write_status"] == "SUCCESS"
    cached = stack.http.get(f"{stack.api_url}/v1/residents/{created}", headers=headers).json()
    assert cached["result"]["data"]["email_1"] == "rf@example.com"
    assert cached["result"]["data"]["last_name"] == "Franklin"


def test_a_backsync_holds_off_other_syncs(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "SANDBOX", name)
    stack.fault(tenant=name, method="GET", kind="latency", latency_ms=1500, times=1)
    backsync = sync(stack, headers, integration_id, "back-sync", models=["residents"])
    refused = stack.http.post(
        f"{stack.api_url}/v1/admin/integrations/{integration_id}/manual-sync", headers=headers
    )
    assert refused.status_code == 409
    assert "backsync" in refused.json()["error"]["message"]
    assert (
        finished(stack, headers, integration_id, backsync["id"])["last_execution"]["type"]
        == "backsync"
    )
    assert sync(stack, headers, integration_id)["status"] == "queued"


def test_schedules_show_next_execution_time(stack: Stack) -> None:
    headers = stack.token("acme")
    integration_id = stack.integration(
        headers, "SANDBOX", tenant(), sync_frequency=6, sync_cadence="HOUR"
    )
    url = f"{stack.api_url}/v1/admin/integrations/{integration_id}/job-schedules/"
    listing = stack.http.get(url, headers=headers).json()
    assert listing["meta"]["total"] == 1
    schedule = listing["results"][0]
    assert (schedule["sync_frequency"], schedule["sync_cadence"]) == (6, "HOUR")
    assert schedule["next_execution_time"] is not None
    one = stack.http.get(f"{url}{schedule['id']}/", headers=headers).json()["results"]
    assert one == schedule
    status = stack.http.get(
        f"{stack.api_url}/v1/admin/integrations/{integration_id}/sync-status", headers=headers
    ).json()["data"]
    assert status["next_execution_time"] == schedule["next_execution_time"]

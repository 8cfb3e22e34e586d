"""Retry-write and job logs end to end: API -> broker -> worker -> sandbox, as a client drives it.

This module runs its own stack with few attempts per job (PMSQ_MAX_ATTEMPTS=2), so a PMS
that answers 5xx forever turns a write into FAILURE quickly.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from support.stack import Stack

MAX_ATTEMPTS = 2


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"PMSQ_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def retry(stack: Stack, headers: dict[str, str], job_id: str) -> Any:
    return stack.http.post(f"{stack.api_url}/v1/admin/retry-write/{job_id}", headers=headers)


def attempts(
    stack: Stack, headers: dict[str, str], job_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = stack.http.get(
        f"{stack.api_url}/v1/admin/logs/jobs/{job_id}", params=params, headers=headers
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["results"]
    return entries


def partial_write(stack: Stack, headers: dict[str, str], name: str) -> tuple[str, str]:
    """A SANDBOX applicant with three contacts, the last with an invalid phone."""
    integration_id = stack.integration(headers, "SANDBOX", name)
    body = {
        "integration_id": integration_id,
        "last_name": "Hopper",
        "contacts": [
            {"email_1": "grace@example.com"},
            {"phone_1": "555-0100"},
            {"phone_1": "not-a-phone"},
        ],
    }
    accepted = stack.write(headers, "applicants", body)
    assert accepted.status_code == 200, accepted.text
    return integration_id, str(accepted.json()["job_id"])


def test_retry_of_a_partial_success_reruns_only_the_failed_job(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    _, original = partial_write(stack, headers, name)
    before = stack.wait_final(headers, original)
    assert before["write_status"] == "PARTIAL_SUCCESS", before
    applicant = stack.sandbox_records(name, "applicants")[0]["id"]
    seen = len(stack.sandbox_requests(name))

    retried = retry(stack, headers, original)
    assert retried.status_code == 200, retried.text
    assert set(retried.json()) == {"success", "job_id"}
    assert retried.json()["success"] is True
    new_id = retried.json()["job_id"]
    assert new_id != original

    after = stack.wait_final(headers, new_id)
    assert after["write_status"] == "FAILURE", after
    assert len(after["errors"]) == 1 and "not-a-phone" in after["errors"][0]
    new_requests = stack.sandbox_requests(name)[seen:]
    assert [(r["method"], r["path"]) for r in new_requests] == [("POST", f"/t/{name}/contacts")]
    # The copy is linked to the applicant the original created.
    [entry] = attempts(stack, headers, new_id)
    [log] = entry["logs"]
    data = stack.http.get(
        f"{stack.api_url}/v1/admin/job-logs/{log['id']}/data", headers=headers
    ).json()
    assert json.loads(data["request"]["body"]) == {
        "applicant_id": applicant,
        "phone_1": "not-a-phone",
    }
    # The original stays as history.
    assert stack.status(headers, original).json() == before
    assert len(stack.sandbox_records(name, "contacts")) == 2
    # One retry per write.
    again = retry(stack, headers, original)
    assert again.status_code == 409, again.text
    writes = stack.http.get(
        f"{stack.api_url}/v1/admin/logs/writes/", params={"order-by": "created_at:asc"},
        headers=headers,
    ).json()["results"]["logs"]  # fmt: skip
    by_id = {w["job_id"]: w for w in writes}
    assert by_id[original]["write_status"] == "PARTIAL_SUCCESS"
    assert by_id[new_id]["retry_of_job_id"] == original


def test_retry_of_a_success_is_409(stack: Stack) -> None:
    headers = stack.token("acme")
    integration_id = stack.integration(headers, "SANDBOX", tenant())
    job_id = stack.write(
        headers, "residents", {"integration_id": integration_id, "last_name": "Lovelace"}
    ).json()["job_id"]
    assert stack.wait_final(headers, job_id)["write_status"] == "SUCCESS"
    refused = retry(stack, headers, job_id)
    assert refused.status_code == 409, refused.text
    assert "SUCCESS" in refused.json()["error"]["message"]


def test_a_failure_from_5xx_succeeds_on_retry_once_the_pms_recovers(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "SANDBOX", name)
    stack.fault(tenant=name, kind="status", status=503)
    job_id = stack.write(
        headers,
        "leases",
        {"integration_id": integration_id, "unit_id": "u1", "rent_amount_in_cents": 1850},
    ).json()["job_id"]
    failed = stack.wait_final(headers, job_id)
    assert failed["write_status"] == "FAILURE", failed
    assert [r["status"] for r in stack.sandbox_requests(name)] == [503] * MAX_ATTEMPTS

    # One entry per attempt: the earlier ones RETRIED, the last the job's final status.
    entries = attempts(stack, headers, job_id)
    assert [(e["attempt"], e["attempt_status"]) for e in entries] == [
        (1, "RETRIED"),
        (2, "FAILURE"),
    ]
    assert [[log["response_status"] for log in e["logs"]] for e in entries] == [[503], [503]]

    cleared = stack.http.delete(f"{stack.sandbox_url}/_sandbox/faults", params={"tenant": name})
    assert cleared.json() == {"deleted": 1}
    retried = retry(stack, headers, job_id)
    assert retried.status_code == 200, retried.text
    new_id = retried.json()["job_id"]
    outcome = stack.wait_final(headers, new_id)
    records = stack.sandbox_records(name, "leases")
    assert len(records) == 1
    assert outcome == {
        "write_status": "SUCCESS",
        "errors": [],
        "created_record_id": records[0]["id"],
    }
    assert stack.status(headers, job_id).json() == failed


def test_job_logs_show_the_tree_and_the_redacted_exchange(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    _, root = partial_write(stack, headers, name)
    assert stack.wait_final(headers, root)["write_status"] == "PARTIAL_SUCCESS"

    tree = attempts(stack, headers, root)
    assert tree[0]["job_id"] == root
    children = [e for e in tree if e["job_id"] != root]
    assert len(children) == 3
    assert {e["parent_job_id"] for e in children} == {root}
    assert sorted(e["attempt_status"] for e in children) == ["FAILURE", "SUCCESS", "SUCCESS"]
    explicit = attempts(stack, headers, root, include_all_jobs="true")
    assert explicit == tree
    alone = attempts(stack, headers, root, include_all_jobs="false")
    assert [(e["job_id"], e["attempt"], e["attempt_status"]) for e in alone] == [
        (root, 1, "SUCCESS")
    ]
    child = next(e for e in children if e["attempt_status"] == "FAILURE")
    only_child = attempts(stack, headers, child["job_id"])
    assert [e["job_id"] for e in only_child] == [child["job_id"]]

    [log] = alone[0]["logs"]
    one = stack.http.get(f"{stack.api_url}/v1/admin/job-logs/{log['id']}/", headers=headers)
    assert one.status_code == 200, one.text
    assert {key: one.json()["results"][key] for key in log} == log
    data = stack.http.get(f"{stack.api_url}/v1/admin/job-logs/{log['id']}/data", headers=headers)
    assert data.status_code == 200, data.text
    exchange = data.json()
    request_headers = {k.lower(): v for k, v in exchange["request"]["headers"].items()}
    assert request_headers["authorization"] == "[REDACTED]"
    assert exchange["request"]["method"] == "POST"
    assert exchange["request"]["url"].endswith(f"/t/{name}/applicants")
    assert json.loads(exchange["request"]["body"]) == {"last_name": "Hopper"}
    assert exchange["response"]["status"] == 201
    created = stack.sandbox_records(name, "applicants")[0]
    assert json.loads(exchange["response"]["body"])["id"] == created["id"]
    assert f"key-of-{name}" not in data.text

    failed_log = child["logs"][0]
    failed_data = stack.http.get(
        f"{stack.api_url}/v1/admin/job-logs/{failed_log['id']}/data", headers=headers
    ).json()
    assert failed_data["response"]["status"] == 422
    assert "not-a-phone" in failed_data["response"]["body"]

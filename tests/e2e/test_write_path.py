"""The write path end to end, as a client drives it: API -> broker -> worker -> sandbox."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from support.stack import Stack

from pmsq.models.job import Job, JobLog


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_create_succeeds_and_reports_the_pms_record_id(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "SANDBOX", name)
    accepted = stack.write(
        headers,
        "residents",
        {"integration_id": integration_id, "last_name": "Lovelace", "notes": "vip"},
    )
    assert accepted.status_code == 200, accepted.text
    outcome = stack.wait_final(headers, accepted.json()["job_id"])
    records = stack.sandbox_records(name, "residents")
    assert outcome == {
        "write_status": "SUCCESS",
        "errors": [],
        "created_record_id": records[0]["id"],
    }
    assert records[0]["notes"] == "vip"


def test_pms_validation_error_fails_with_the_pms_text(stack: Stack) -> None:
    headers = stack.token("acme")
    integration_id = stack.integration(headers, "SANDBOX", tenant())
    job_id = stack.write(
        headers, "residents", {"integration_id": integration_id, "first_name": "X"}
    ).json()["job_id"]
    outcome = stack.wait_final(headers, job_id)
    assert outcome["write_status"] == "FAILURE"
    assert len(outcome["errors"]) == 1 and "last_name is required" in outcome["errors"][0]
    assert outcome["created_record_id"] is None


def test_child_tree_with_one_failing_child_is_partial_success(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
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
    job_id = stack.write(headers, "applicants", body).json()["job_id"]
    outcome = stack.wait_final(headers, job_id)
    assert outcome["write_status"] == "PARTIAL_SUCCESS"
    assert len(outcome["errors"]) == 1 and "not-a-phone" in outcome["errors"][0]
    applicant = stack.sandbox_records(name, "applicants")[0]
    assert outcome["created_record_id"] == applicant["id"]
    contacts = stack.sandbox_records(name, "contacts")
    assert sorted(c.get("email_1") or c.get("phone_1") for c in contacts) == [
        "555-0100",
        "grace@example.com",
    ]
    assert {c["applicant_id"] for c in contacts} == {applicant["id"]}


def test_created_record_id_comes_from_a_child_when_the_root_creates_nothing(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "RENT_MANAGER", name)
    job_id = stack.write(
        headers, "applicants", {"integration_id": integration_id, "last_name": "Turing"}
    ).json()["job_id"]
    outcome = stack.wait_final(headers, job_id)
    paths = [(r["method"], r["path"]) for r in stack.sandbox_requests(name)]
    assert paths == [("POST", f"/t/{name}/applicants/validate"), ("POST", f"/t/{name}/applicants")]
    created = stack.sandbox_records(name, "applicants")[0]["id"]
    assert outcome == {"write_status": "SUCCESS", "errors": [], "created_record_id": created}
    with stack.session_factory() as session:
        root = session.get(Job, job_id)
        assert root is not None and root.created_record_id is None


def test_unknown_field_is_refused_unless_ignored(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "RENT_MANAGER", name)
    body = {"integration_id": integration_id, "last_name": "Noether", "notes": "n/a"}
    refused = stack.write(headers, "residents", body)
    assert refused.status_code == 400 and "notes" in refused.json()["error"]["message"]
    accepted = stack.write(headers, "residents", body, params={"ignore_unknown_fields": "true"})
    assert accepted.status_code == 200
    assert stack.wait_final(headers, accepted.json()["job_id"])["write_status"] == "SUCCESS"
    assert "notes" not in stack.sandbox_records(name, "residents")[0]
    assert len(stack.sandbox_requests(name)) == 1


def test_a_5xx_is_retried_and_succeeds(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "SANDBOX", name)
    stack.fault(tenant=name, method="POST", model="leases", kind="status", status=503, times=2)
    job_id = stack.write(
        headers,
        "leases",
        {"integration_id": integration_id, "unit_id": "u1", "rent_amount_in_cents": 1850},
    ).json()["job_id"]
    outcome = stack.wait_final(headers, job_id)
    assert outcome["write_status"] == "SUCCESS"
    assert [r["status"] for r in stack.sandbox_requests(name)] == [503, 503, 201]
    with stack.session_factory() as session:
        logs = session.scalars(select(JobLog).where(JobLog.job_id == job_id)).all()
        assert sorted((log.attempt, log.response_status) for log in logs) == [
            (1, 503),
            (2, 503),
            (3, 201),
        ]


def test_update_reaches_the_pms(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "SANDBOX", name)
    created = stack.wait_final(
        headers,
        stack.write(
            headers, "residents", {"integration_id": integration_id, "last_name": "A"}
        ).json()["job_id"],
    )["created_record_id"]
    job_id = stack.write(
        headers,
        "residents",
        {"integration_id": integration_id, "email_1": "a@example.com"},
        record_id=created,
    ).json()["job_id"]
    assert stack.wait_final(headers, job_id)["write_status"] == "SUCCESS"
    assert stack.sandbox_records(name, "residents")[0]["email_1"] == "a@example.com"


def test_another_accounts_token_gets_404(stack: Stack) -> None:
    acme, other = stack.token("acme"), stack.token("initech")
    integration_id = stack.integration(acme, "SANDBOX", tenant())
    job_id = stack.write(
        acme, "residents", {"integration_id": integration_id, "last_name": "B"}
    ).json()["job_id"]
    assert stack.status(other, job_id).status_code == 404
    assert stack.wait_final(acme, job_id)["write_status"] == "SUCCESS"
    assert stack.status(other, job_id).status_code == 404


def test_no_secret_reaches_job_logs(stack: Stack) -> None:
    headers = stack.token("acme")
    name = tenant()
    integration_id = stack.integration(headers, "SANDBOX", name)
    job_id = stack.write(
        headers, "residents", {"integration_id": integration_id, "last_name": "C"}
    ).json()["job_id"]
    stack.wait_final(headers, job_id)
    secret = f"key-of-{name}-0123456789"
    with stack.session_factory() as session:
        logs = session.scalars(select(JobLog).where(JobLog.job_id == job_id)).all()
        assert logs, "a PMS request was logged"
        assert logs[0].request_headers.get("authorization") == "[REDACTED]"
        for log in logs:
            dumped = repr(
                (
                    log.url,
                    log.request_headers,
                    log.request_body,
                    log.response_headers,
                    log.response_body,
                )
            )
            assert secret not in dumped
    assert secret not in stack.logs()

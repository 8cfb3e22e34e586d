"""pmsq's admin answers checked against Propexo's shapes (tests/support/propexo.py), on SQLite
and PostgreSQL alike: a Propexo client that only changes its base URL must read them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker
from support import polytomic, propexo
from support.api import ApiHarness, api_harness

from pmsq.crypto import CredentialCipher
from pmsq.models.enums import JobStatus
from pmsq.models.job import Job, JobLog
from pmsq.models.record import Record
from pmsq.models.sync import DataDiff, SyncExecution
from pmsq.settings import Settings
from pmsq.workers.record_cache import store
from pmsq.workers.webhooks import events as webhook_events
from pmsq.workers.webhooks.deliverer import WebhookDeliverer

SECRET = "PROPEXO-SECRET-" + uuid.uuid4().hex
T_NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[ApiHarness]:
    with api_harness(database_url, session_factory) as harness:
        yield harness


def account(api: ApiHarness) -> dict[str, str]:
    return api.token(f"acct-{uuid.uuid4().hex[:12]}")


M = TypeVar("M", bound=BaseModel)


def shaped(model: type[M], body: Any) -> M:
    """`body` read as Propexo's `model`; a missing field or a wrong type fails the test."""
    return model.model_validate(body)


#: Rent Manager's credentials as Propexo spells them (production: a partner token).
RENT_MANAGER_CREDENTIALS = {"PartnerToken": SECRET, "companyId": "1"}


def make_integration(api: ApiHarness, headers: dict[str, str], **extra: Any) -> str:
    body = {
        "name": "propexo client",
        "integration_vendor": "BUILDIUM",
        "active": True,
        "base_url": "http://127.0.0.1:9/t/x",
        "credentials": {"clientId": "client", "secret": SECRET},
        **extra,
    }
    response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["id"])


# -- shared shapes -------------------------------------------------------------------------


def test_error_details_is_an_object_keeping_the_fields_at_fault(api: ApiHarness) -> None:
    response = api.client.get(
        "/v1/admin/integrations/", params={"limit": 251}, headers=account(api)
    )
    assert response.status_code == 400
    error = shaped(propexo.ErrorResponse, response.json()).error
    assert error.details is not None
    assert "limit" in {d["field"] for d in error.details["fields"]}


def test_meta_order_by_is_an_array_of_objects(api: ApiHarness) -> None:
    headers = account(api)
    listed = api.client.get(
        "/v1/admin/integrations/", params={"order-by": "name:desc"}, headers=headers
    )
    assert listed.status_code == 200, listed.text
    meta = shaped(propexo.ResponseMeta, listed.json()["meta"])
    assert meta.orderBy == [{"name": "desc"}]


@pytest.mark.parametrize(("raw", "limit"), [("0", 0), ("", 100), ("null", 100), ("250", 250)])
def test_limit_takes_what_propexo_takes(api: ApiHarness, raw: str, limit: int) -> None:
    headers = account(api)
    make_integration(api, headers)
    listed = api.client.get("/v1/admin/integrations/", params={"limit": raw}, headers=headers)
    assert listed.status_code == 200, listed.text
    meta = shaped(propexo.ResponseMeta, listed.json()["meta"])
    assert (meta.limit, meta.total) == (limit, 1)
    assert len(listed.json()["results"]) == min(limit, 1)


# -- integrations --------------------------------------------------------------------------


def test_create_answers_200_with_propexo_defaults(api: ApiHarness) -> None:
    """A body as Propexo's docs show it: the vendor in its spelling, nothing else optional."""
    headers = account(api)
    response = api.client.post(
        "/v1/admin/integrations/",
        json={
            "integration_vendor": "RENTMANAGER",
            "name": "rm",
            "credentials": RENT_MANAGER_CREDENTIALS,
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    created = shaped(propexo.IntegrationCreateResponse, response.json()).result
    assert created.vendor == "RENTMANAGER"
    assert (created.active, created.system, created.allow_manual_syncs) == (
        False,
        "PRODUCTION",
        True,
    )
    assert SECRET not in response.text


def test_create_takes_system_manual_syncs_based_on_and_the_old_vendor_spelling(
    api: ApiHarness,
) -> None:
    headers = account(api)
    original = make_integration(api, headers)
    response = api.client.post(
        "/v1/admin/integrations/",
        json={
            "integration_vendor": "RENT_MANAGER",
            "name": "copy",
            "system": "SANDBOX",
            "allow_manual_syncs": False,
            "based_on_integration_id": original,
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    created = shaped(propexo.IntegrationCreateResponse, response.json()).result
    assert (created.vendor, created.system, created.allow_manual_syncs) == (
        "RENTMANAGER",
        "SANDBOX",
        False,
    )
    # Credentials come from the integration it is based on.
    assert response.json()["result"]["can_authenticate"] is True
    unknown = api.client.post(
        "/v1/admin/integrations/",
        json={"integration_vendor": "BUILDIUM", "name": "x", "based_on_integration_id": "nope"},
        headers=headers,
    )
    assert unknown.status_code == 400
    assert "based_on_integration_id" in {
        d["field"] for d in unknown.json()["error"]["details"]["fields"]
    }
    refused = api.client.post(
        f"/v1/admin/integrations/{created.id}/manual-sync", json={}, headers=headers
    )
    assert refused.status_code == 409, refused.text


def test_list_items_are_propexo_integrations_and_filters_are_honoured(api: ApiHarness) -> None:
    headers = account(api)
    buildium = make_integration(api, headers)
    rent_manager = make_integration(
        api, headers, integration_vendor="RENTMANAGER", credentials=RENT_MANAGER_CREDENTIALS
    )
    archived = make_integration(api, headers, is_archived=True)
    listed = api.client.get("/v1/admin/integrations/", headers=headers)
    assert listed.status_code == 200, listed.text
    page = shaped(propexo.IntegrationList, listed.json())
    assert {i.id for i in page.results} == {buildium, rent_manager, archived}
    by_vendor = shaped(
        propexo.IntegrationList,
        api.client.get(
            "/v1/admin/integrations/",
            params={"integration_vendor": "RENTMANAGER"},
            headers=headers,
        ).json(),
    )
    assert [i.id for i in by_vendor.results] == [rent_manager]
    live = shaped(
        propexo.IntegrationList,
        api.client.get(
            "/v1/admin/integrations/", params={"is_archived": "false"}, headers=headers
        ).json(),
    )
    assert {i.id for i in live.results} == {buildium, rent_manager}


@contextmanager
def counted_statements(api: ApiHarness) -> Iterator[list[str]]:
    """The SQL statements the API sends while the block runs (every cursor execution)."""
    engine = api.session_factory.kw["bind"]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def add_execution(
    api: ApiHarness, integration_id: str, sync_type: str, status: str, completed_at: datetime | None
) -> None:
    with api.session_factory.begin() as session:
        session.add(
            SyncExecution(
                integration_id=integration_id,
                type=sync_type,
                status=status,
                completed_at=completed_at,
            )
        )


def test_the_integration_list_reads_a_page_in_a_fixed_number_of_statements(
    api: ApiHarness,
) -> None:
    """Each item's sync fields (last completed sync and backsync, a running sync) come from
    one query for the whole page: ten items cost what one costs."""
    headers = account(api)
    done_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def list_page() -> tuple[int, dict[str, propexo.Integration]]:
        with counted_statements(api) as statements:
            listed = api.client.get("/v1/admin/integrations/", headers=headers)
        assert listed.status_code == 200, listed.text
        page = shaped(propexo.IntegrationList, listed.json())
        return len(statements), {i.id: i for i in page.results}

    first = make_integration(api, headers)
    add_execution(api, first, "BACKSYNC", "SUCCESS", done_at)
    add_execution(api, first, "MANUAL", "RUNNING", None)
    one_item, items = list_page()
    assert len(items) == 1
    for _ in range(9):
        other = make_integration(api, headers)
        add_execution(api, other, "SCHEDULED", "SUCCESS", done_at - timedelta(hours=1))
    ten_items, items = list_page()
    assert len(items) == 10
    assert ten_items == one_item
    shown = items[first]
    assert (instant(shown.last_completed_sync), instant(shown.last_completed_back_sync)) == (
        done_at,
        done_at,
    )
    assert shown.is_running_sync is True
    assert {
        (instant(i.last_completed_sync), instant(i.last_completed_back_sync), i.is_running_sync)
        for key, i in items.items()
        if key != first
    } == {(done_at - timedelta(hours=1), None, False)}


def instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def test_an_unknown_filter_is_a_400_naming_it(api: ApiHarness) -> None:
    response = api.client.get(
        "/v1/admin/integrations/", params={"vendor": "BUILDIUM"}, headers=account(api)
    )
    assert response.status_code == 400, response.text
    error = shaped(propexo.ErrorResponse, response.json()).error
    assert error.details is not None
    assert [d["field"] for d in error.details["fields"]] == ["vendor"]


def test_get_one_is_meta_and_results_and_shows_a_running_sync(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    path = f"/v1/admin/integrations/{integration_id}/"
    before = shaped(propexo.IntegrationOne, api.client.get(path, headers=headers).json())
    assert before.results is not None and before.results.id == integration_id
    assert (before.results.is_running_sync, before.results.last_completed_sync) == (False, None)
    started = api.client.post(f"{path}manual-sync", json={}, headers=headers)
    assert started.status_code == 200, started.text
    after = shaped(propexo.IntegrationOne, api.client.get(path, headers=headers).json())
    assert after.results is not None and after.results.is_running_sync is True


def test_update_answers_propexo_update_shape(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    response = api.client.put(
        f"/v1/admin/integrations/{integration_id}/",
        json={"name": "renamed", "system": "SANDBOX", "allow_manual_syncs": False},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    updated = shaped(propexo.IntegrationUpdateResponse, response.json()).result
    assert (updated.name, updated.system, updated.allow_manual_syncs) == (
        "renamed",
        "SANDBOX",
        False,
    )
    assert updated.integration_vendor == "BUILDIUM"
    deleted = api.client.delete(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    assert shaped(propexo.Success, deleted.json()).success is True


# -- job schedules, sync triggers, rate limits ---------------------------------------------


def test_job_schedules_list_and_one_are_propexo_shaped(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    base = f"/v1/admin/integrations/{integration_id}/job-schedules/"
    listed = shaped(propexo.JobScheduleList, api.client.get(base, headers=headers).json())
    (schedule,) = listed.results
    assert (schedule.integration_id, schedule.status) == (integration_id, "ACTIVE")
    one = api.client.get(f"{base}{schedule.id}/", headers=headers)
    assert one.status_code == 200, one.text
    assert shaped(propexo.JobScheduleOne, one.json()).results.id == schedule.id
    api.client.put(
        f"/v1/admin/integrations/{integration_id}/", json={"active": False}, headers=headers
    )
    paused = shaped(
        propexo.JobScheduleOne, api.client.get(f"{base}{schedule.id}/", headers=headers).json()
    )
    assert paused.results.status == "INACTIVE"


@pytest.mark.parametrize("kind", ["manual-sync", "back-sync"])
def test_sync_triggers_answer_result_success_and_take_sync_config_id(
    api: ApiHarness, kind: str
) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    response = api.client.post(
        f"/v1/admin/integrations/{integration_id}/{kind}",
        json={"sync_config_id": "cfg-1", "models_to_sync": ["residents"]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert shaped(propexo.SyncTriggerResponse, response.json()).result.success is True
    assert response.json()["result"]["execution"]["models"] == ["residents"]


def test_rate_limits_are_propexo_shaped(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(
        api, headers, max_request_frequency=2, max_request_cadence="SECOND"
    )
    response = api.client.get(
        f"/v1/admin/integrations/{integration_id}/rate-limits/", headers=headers
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    by_api = propexo.RateLimitsByApi.model_validate(results)
    per_minute = propexo.RateLimitsPerMinute.model_validate(results)
    assert per_minute.minute_limit == 120
    (limit,) = by_api.api_ratelimits
    assert (limit.minute_limit, limit.hour_limit, limit.day_limit) == (120, 7200, 172_800)
    shaped(propexo.RateLimitsResponse, response.json())


# -- logs and data diffs -------------------------------------------------------------------


def finished_write(
    api: ApiHarness, headers: dict[str, str], integration_id: str
) -> tuple[str, str]:
    """A resident write that succeeded after one logged PMS exchange: (job id, log id)."""
    response = api.client.post(
        "/v1/residents/",
        json={"integration_id": integration_id, "last_name": "Lovelace"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    job_id = str(response.json()["job_id"])
    with api.session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.attempts = JobStatus.SUCCESS.value, 1
        job.tree_finished, job.tree_succeeded = 1, 1
        log = JobLog(
            job_id=job_id,
            attempt=1,
            method="POST",
            url="http://127.0.0.1:9/t/x/residents",
            request_headers={"Authorization": "[REDACTED]"},
            request_body='{"last_name": "Lovelace"}',
            response_status=201,
            response_body='{"id": "r-1"}',
        )
        session.add(log)
        session.flush()
        return job_id, log.id


def test_job_logs_are_propexo_shaped(api: ApiHarness) -> None:
    headers = account(api)
    job_id, log_id = finished_write(api, headers, make_integration(api, headers))
    listed = api.client.get("/v1/admin/logs/jobs/", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [j.job_id for j in shaped(propexo.JobLogList, listed.json()).results] == [job_id]
    by_job = api.client.get(f"/v1/admin/logs/jobs/{job_id}", headers=headers)
    assert by_job.status_code == 200, by_job.text
    assert [j.job_id for j in shaped(propexo.JobLogList, by_job.json()).results] == [job_id]
    one = api.client.get(f"/v1/admin/job-logs/{log_id}/", headers=headers)
    assert one.status_code == 200, one.text
    log = shaped(propexo.JobLogOne, one.json()).results
    assert (log.id, log.job_id, log.root_job_id, log.status) == (log_id, job_id, job_id, "SUCCESS")


def test_job_log_data_is_a_302_to_a_link_that_needs_no_token(api: ApiHarness) -> None:
    headers = account(api)
    _, log_id = finished_write(api, headers, make_integration(api, headers))
    redirect = api.client.get(
        f"/v1/admin/job-logs/{log_id}/data", headers=headers, follow_redirects=False
    )
    assert redirect.status_code == 302, redirect.text
    link = redirect.headers["location"]
    data = api.client.get(link)  # no Authorization: the link carries its own
    assert data.status_code == 200, data.text
    assert data.json()["request"]["body"] == '{"last_name": "Lovelace"}'
    assert data.json()["response"]["status"] == 201
    forged = api.client.get(link.replace("signature=", "signature=0"))
    assert forged.status_code == 404
    other = api.client.get(f"/v1/admin/job-logs/{log_id}/data", headers=account(api))
    assert other.status_code == 404


def test_write_logs_are_results_logs_filtered_by_model(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    job_id, log_id = finished_write(api, headers, integration_id)
    response = api.client.get(
        "/v1/admin/logs/writes/", params={"write_category": "residents"}, headers=headers
    )
    assert response.status_code == 200, response.text
    (log,) = shaped(propexo.WriteLogsResponse, response.json()).results.logs
    assert (log.job_id, log.job_log_id, log.status, log.vendor, log.name) == (
        job_id,
        log_id,
        "SUCCESS",
        "BUILDIUM",
        "residents",
    )
    leases = api.client.get(
        "/v1/admin/logs/writes/", params={"write_category": "leases"}, headers=headers
    )
    assert shaped(propexo.WriteLogsResponse, leases.json()).results.logs == []


def test_data_diffs_are_propexo_shaped_and_filtered(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(
        api, headers, integration_vendor="RENTMANAGER", credentials=RENT_MANAGER_CREDENTIALS
    )
    now = datetime.now(UTC)
    with api.session_factory.begin() as session:
        execution = SyncExecution(
            integration_id=integration_id, type="MANUAL", status="SUCCESS", job_id="job-9"
        )
        session.add(execution)
        session.flush()
        for age_h, pms_id in ((3, "old"), (1, "new")):
            session.add(
                DataDiff(
                    integration_id=integration_id,
                    execution_id=execution.id,
                    model="residents",
                    pms_id=pms_id,
                    diff_type="UPDATE",
                    changes={"last_name": {"old": "A", "new": "B"}},
                    created_at=now - timedelta(hours=age_h),
                )
            )
    get = lambda **params: api.client.get(  # noqa: E731
        "/v1/admin/data-diffs/", params=params, headers=headers
    )
    everything = shaped(propexo.DataDiffList, get().json()).results
    assert [(d.model_record_id, d.job_id, d.integration_vendor) for d in everything] == [
        ("new", "job-9", "RENTMANAGER"),
        ("old", "job-9", "RENTMANAGER"),
    ]
    middle = (now - timedelta(hours=2)).isoformat()
    after = shaped(propexo.DataDiffList, get(after=middle).json()).results
    assert [d.model_record_id for d in after] == ["new"]
    before = shaped(propexo.DataDiffList, get(before=middle).json()).results
    assert [d.model_record_id for d in before] == ["old"]
    assert shaped(propexo.DataDiffList, get(integration_vendor="BUILDIUM").json()).results == []
    assert (
        len(shaped(propexo.DataDiffList, get(integration_vendor="RENTMANAGER").json()).results) == 2
    )


# -- webhooks ------------------------------------------------------------------------------

HOOK_SECRET = "propexo-hook-secret-" + uuid.uuid4().hex[:8]


def test_webhooks_crud_at_propexos_path(api: ApiHarness) -> None:
    headers = account(api)
    created = api.client.post(
        "/v1/webhooks/",
        json={
            "url": "https://hooks.example.com/propexo",
            "triggers": ["WRITE_OPERATION_FAILURE", "JOB_FAILURE"],
            "secret": HOOK_SECRET,
            "headers": [{"header": "X-Client-Token", "value": "t-1"}],
            "model": "residents",
        },
        headers=headers,
    )
    assert created.status_code == 200, created.text
    hook = shaped(propexo.WebhookResponse, created.json()).result
    assert (hook.secret, hook.active, hook.system) == (HOOK_SECRET, False, "PRODUCTION")
    assert [(t.trigger, t.model) for t in hook.triggers] == [
        ("WRITE_OPERATION_FAILURE", "residents"),
        ("JOB_FAILURE", "residents"),
    ]
    # Inactive webhooks are listed only when asked for (Propexo's `active` defaults to true).
    assert (
        shaped(propexo.WebhookList, api.client.get("/v1/webhooks/", headers=headers).json()).results
        == []
    )
    inactive = api.client.get("/v1/webhooks/", params={"active": "false"}, headers=headers)
    assert [w.id for w in shaped(propexo.WebhookList, inactive.json()).results] == [hook.id]
    every = api.client.get("/v1/webhooks/", params={"active": "null"}, headers=headers)
    assert [w.id for w in shaped(propexo.WebhookList, every.json()).results] == [hook.id]
    updated = api.client.put(
        f"/v1/webhooks/{hook.id}",
        json={"active": True, "triggers": ["JOB_SUCCESS"]},
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    after = shaped(propexo.WebhookResponse, updated.json()).result
    assert (after.active, [t.trigger for t in after.triggers]) == (True, ["JOB_SUCCESS"])
    one = api.client.get(f"/v1/webhooks/{hook.id}", headers=headers)
    assert shaped(propexo.WebhookOne, one.json()).results.headers == [
        propexo.WebhookHeader(header="X-Client-Token", value="t-1")
    ]
    deleted = api.client.delete(f"/v1/webhooks/{hook.id}", headers=headers)
    assert shaped(propexo.WebhookDeleted, deleted.json()).result.id == hook.id
    assert api.client.get(f"/v1/webhooks/{hook.id}", headers=headers).status_code == 404


def test_data_and_first_sync_triggers_are_taken(api: ApiHarness) -> None:
    """Propexo's every trigger registers (DATA_NEW, DATA_UPDATE and FIRST_SYNC_COMPLETE were a
    400 before pmsq fired them)."""
    triggers = ["DATA_NEW", "DATA_UPDATE", "FIRST_SYNC_COMPLETE", "SYNC_COMPLETE"]
    created = api.client.post(
        "/v1/webhooks/",
        json={"url": "https://hooks.example.com/data", "triggers": triggers, "model": "leases"},
        headers=account(api),
    )
    assert created.status_code == 200, created.text
    hook = shaped(propexo.WebhookResponse, created.json()).result
    assert [(t.trigger, t.model) for t in hook.triggers] == [(t, "leases") for t in triggers]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"triggers": ["DATA_DELETE"]}, "triggers"),
        ({"secret": "short"}, "secret"),
        ({"headers": [{"header": "propexo-signature", "value": "x"}]}, "headers.0.header"),
    ],
    ids=["unknown-trigger", "short-secret", "reserved-header"],
)
def test_webhook_refusals_name_the_field(api: ApiHarness, body: dict[str, Any], field: str) -> None:
    payload = {"url": "https://hooks.example.com/x", "triggers": ["JOB_FAILURE"], **body}
    response = api.client.post("/v1/webhooks/", json=payload, headers=account(api))
    assert response.status_code == 400, response.text
    assert field in {d["field"] for d in response.json()["error"]["details"]["fields"]}


def test_a_delivery_carries_propexo_signature_and_the_clients_headers(
    api: ApiHarness, database_url: str
) -> None:
    headers = account(api)
    hook = api.client.post(
        "/v1/webhooks/",
        json={
            "url": "https://hooks.example.com/propexo",
            "triggers": ["JOB_SUCCESS"],
            "secret": HOOK_SECRET,
            "headers": [{"header": "X-Client-Token", "value": "t-1"}],
            "active": True,
        },
        headers=headers,
    )
    assert hook.status_code == 200, hook.text
    job_id, _ = finished_write(api, headers, make_integration(api, headers))
    with api.session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        webhook_events.on_job_finished(session, job, job, datetime.now(UTC))
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    settings = Settings(database_url=database_url)
    http = httpx.Client(transport=httpx.MockTransport(receiver))
    deliverer = WebhookDeliverer(
        api.session_factory, CredentialCipher(settings.fernet_keys), http, settings
    )
    assert deliverer.deliver_due() >= 1
    (request,) = [r for r in received if r.headers.get("x-pmsq-event") == "JOB_SUCCESS"]
    expected = hmac.new(HOOK_SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["propexo-signature"] == expected
    assert request.headers["x-client-token"] == "t-1"
    assert json.loads(request.content)["trigger"] == "JOB_SUCCESS"


# -- sync status (Polytomic's shape) -------------------------------------------------------


def test_sync_status_is_polytomics(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    path = f"/v1/admin/integrations/{integration_id}/sync-status"
    started = api.client.post(
        f"/v1/admin/integrations/{integration_id}/manual-sync", json={}, headers=headers
    )
    execution_id = started.json()["result"]["execution"]["id"]
    running = shaped(polytomic.SyncStatusEnvelope, api.client.get(path, headers=headers).json())
    assert running.data.current_execution is not None
    assert running.data.current_execution.status == "queued"
    with api.session_factory.begin() as session:
        execution = session.get(SyncExecution, execution_id)
        assert execution is not None
        execution.status = "SUCCESS"
        execution.insert_count, execution.update_count, execution.total_count = 2, 3, 5
        execution.completed_at = datetime.now(UTC)
    done = shaped(polytomic.SyncStatusEnvelope, api.client.get(path, headers=headers).json())
    assert done.data.current_execution is None and done.data.last_execution is not None
    assert done.data.last_execution.status == "completed"
    counts = done.data.last_execution.counts
    assert (counts.insert, counts.update, counts.upserts, counts.total) == (2, 3, 5, 5)
    # The integration shows the sync it completed.
    integration = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    assert integration.json()["results"]["last_completed_sync"] is not None


# -- users, data access, normalization, property configurations ----------------------------


def test_users_are_an_empty_list_and_an_unknown_user_is_404(api: ApiHarness) -> None:
    headers = account(api)
    listed = api.client.get("/v1/admin/users/", headers=headers)
    assert listed.status_code == 200, listed.text
    assert shaped(propexo.UserList, listed.json()).results == []
    one = api.client.get("/v1/admin/users/u-1", headers=headers)
    assert one.status_code == 404
    shaped(propexo.ErrorResponse, one.json())


def test_a_data_access_check_is_a_read_sync_and_the_report_shows_what_it_found(
    api: ApiHarness,
) -> None:
    """Before this change the report said `untested` for every read and the POST answered
    began_data_access: false."""
    headers = account(api)
    integration_id = make_integration(api, headers)
    path = f"/v1/admin/integrations/{integration_id}/data-access"

    def report() -> propexo.DataAccess:
        response = api.client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        return shaped(propexo.DataAccessResponse, response.json()).result

    before = report()
    assert before.models["residents"].read == propexo.AccessUntested(untested=True)
    assert (before.data_access_check_in_process, before.last_data_access_check) == (False, None)

    def start() -> bool:
        started = api.client.post(path, json={}, headers=headers)
        assert started.status_code == 200, started.text
        return shaped(propexo.DataAccessStartedResponse, started.json()).result.began_data_access

    assert start() is True
    running = report()
    assert running.data_access_check_in_process is True
    read = running.models["residents"].read
    assert isinstance(read, propexo.AccessStatus) and read.status == "PROCESSING"
    assert start() is False, "one check at a time"
    models = sorted(running.models)
    with api.session_factory.begin() as session:
        (execution,) = session.scalars(
            select(SyncExecution).where(SyncExecution.integration_id == integration_id)
        ).all()
        assert set(execution.models) == set(models), "a check reads every model"
        execution.status = "SUCCESS"
        execution.errors = ["leases: PMS answered 403: no access to leases"]
        execution.cursor = {"model": len(execution.models), "page": 1}
        execution.completed_at = datetime.now(UTC)
    done = report()
    assert done.data_access_check_in_process is False
    assert done.last_data_access_check is not None
    assert done.models["residents"].read == propexo.AccessStatus(
        status="SUCCESS", error_message=None
    )
    assert done.models["leases"].read == propexo.AccessStatus(
        status="FAILED", error_message="PMS answered 403: no access to leases"
    )
    one = api.client.get(f"/v1/admin/integrations/{integration_id}/", headers=headers)
    shown = shaped(propexo.IntegrationOne, one.json()).results
    assert shown is not None and shown.last_data_access_check is not None
    # An integration that takes no manual sync runs no check either.
    api.client.put(
        f"/v1/admin/integrations/{integration_id}/",
        json={"allow_manual_syncs": False},
        headers=headers,
    )
    assert start() is False


def test_normalization_answers_vendor_defaults_and_an_integrations_own_mapping(
    api: ApiHarness,
) -> None:
    """Before this change every field answered an empty default mapping, and none applied."""
    headers = account(api)
    integration_id = make_integration(api, headers)
    path = "/v1/admin/normalization/leases/status"

    def get(**params: str) -> propexo.Normalization:
        response = api.client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return shaped(propexo.NormalizationResponse, response.json()).results

    default = get(integration_vendor="BUILDIUM", integration_id=integration_id)
    assert default.is_custom_mapping is False
    assert (default.mappings["Active"], default.mappings["Past"], default.default_value) == (
        "ACTIVE", "INACTIVE", "OTHER",
    )  # fmt: skip
    custom = {"mappings": {"Active": "ACTIVE", "Past": "EVICTED"}, "default_value": "PENDING"}
    put = api.client.put(
        path, params={"integration_id": integration_id}, json=custom, headers=headers
    )
    assert put.status_code == 200, put.text
    assert shaped(propexo.NormalizationResponse, put.json()).results.is_custom_mapping is True
    own = get(integration_vendor="BUILDIUM", integration_id=integration_id)
    assert (own.is_custom_mapping, own.mappings, own.default_value) == (
        True, custom["mappings"], "PENDING",
    )  # fmt: skip
    assert get(integration_vendor="BUILDIUM").is_custom_mapping is False, "no integration named"
    with api.session_factory.begin() as session:
        change = store(session, integration_id, "leases", {"id": "l-1", "status": "Past"}, T_NOW)
    assert change.kind == "NEW"
    with api.session_factory() as session:
        cached = session.scalars(select(Record).where(Record.pms_id == "l-1")).one()
        assert cached.data["status_normalized"] == "EVICTED"
    dropped = api.client.delete(path, params={"integration_id": integration_id}, headers=headers)
    assert dropped.status_code == 200, dropped.text
    assert get(integration_vendor="BUILDIUM", integration_id=integration_id) == default


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("leases/status", {"mappings": {"x": "NOPE"}, "default_value": "OTHER"}, "mappings.x"),
        ("leases/status", {"mappings": {}, "default_value": "NOPE"}, "default_value"),
        ("residents/status", {"mappings": {}, "default_value": "OTHER"}, "field"),
        ("widgets/status", {"mappings": {}, "default_value": "OTHER"}, "model"),
    ],
    ids=["mapped-value", "default-value", "field", "model"],
)
def test_enum_mapping_refusals_name_the_field(
    api: ApiHarness, path: str, body: dict[str, Any], field: str
) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    response = api.client.put(
        f"/v1/admin/normalization/{path}",
        params={"integration_id": integration_id},
        json=body,
        headers=headers,
    )
    assert response.status_code == 400, response.text
    error = shaped(propexo.ErrorResponse, response.json()).error
    assert error.details is not None
    assert [d["field"] for d in error.details["fields"]] == [field]


def cache_property(api: ApiHarness, integration_id: str, pms_id: str) -> None:
    with api.session_factory.begin() as session:
        session.add(
            Record(integration_id=integration_id, model="properties", pms_id=pms_id, data={})
        )


def write_for(
    api: ApiHarness, headers: dict[str, str], integration_id: str, property_id: str
) -> httpx.Response:
    body = {"integration_id": integration_id, "last_name": "Lovelace", "property_id": property_id}
    return api.client.post("/v1/residents/?ignore_unknown_fields=true", json=body, headers=headers)


def test_property_configurations_gate_writes(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    cache_property(api, integration_id, "p-1")
    path = f"/v1/admin/integrations/{integration_id}/properties"
    listed = api.client.get(path, headers=headers)
    assert listed.status_code == 200, listed.text
    (config,) = shaped(propexo.PropertyConfigurationList, listed.json()).results
    assert (config.property_id, config.enabled) == ("p-1", True)
    assert write_for(api, headers, integration_id, "p-1").status_code == 200
    disabled = api.client.put(f"{path}/{config.id}", json={"enabled": False}, headers=headers)
    assert disabled.status_code == 200, disabled.text
    assert (
        shaped(propexo.PropertyConfigurationUpdateResponse, disabled.json()).results.enabled
        is False
    )
    refused = write_for(api, headers, integration_id, "p-1")
    assert refused.status_code == 400, refused.text
    assert [d["field"] for d in refused.json()["error"]["details"]["fields"]] == ["property_id"]
    # A property never configured follows new_properties_are_enabled.
    api.client.put(
        f"/v1/admin/integrations/{integration_id}/",
        json={"new_properties_are_enabled": False},
        headers=headers,
    )
    assert write_for(api, headers, integration_id, "p-new").status_code == 400
    unknown = api.client.put(f"{path}/nope", json={"enabled": True}, headers=headers)
    assert unknown.status_code == 404


def test_property_configurations_are_enabled_and_disabled_in_bulk(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    for pms_id in ("p-1", "p-2", "p-3"):
        cache_property(api, integration_id, pms_id)
    path = f"/v1/admin/integrations/{integration_id}/properties"
    listed = shaped(propexo.PropertyConfigurationList, api.client.get(path, headers=headers).json())
    ids = {config.property_id: config.id for config in listed.results}

    def enabled() -> dict[str, bool]:
        page = api.client.get(path, headers=headers).json()
        results = shaped(propexo.PropertyConfigurationList, page).results
        return {config.property_id: config.enabled for config in results}

    batch = {"property_configuration_ids": [ids["p-1"], ids["p-2"]], "enabled": False}
    response = api.client.put(f"{path}/batch", json=batch, headers=headers)
    assert response.status_code == 200, response.text
    assert shaped(propexo.Success, response.json()).success is True
    assert enabled() == {"p-1": False, "p-2": False, "p-3": True}
    assert write_for(api, headers, integration_id, "p-2").status_code == 400
    assert write_for(api, headers, integration_id, "p-3").status_code == 200
    # One unknown id (here another integration's) and nothing changes.
    other = make_integration(api, headers)
    cache_property(api, other, "p-9")
    (foreign,) = shaped(
        propexo.PropertyConfigurationList,
        api.client.get(f"/v1/admin/integrations/{other}/properties", headers=headers).json(),
    ).results
    mixed = {"property_configuration_ids": [ids["p-1"], foreign.id], "enabled": True}
    refused = api.client.put(f"{path}/batch", json=mixed, headers=headers)
    assert refused.status_code == 400, refused.text
    error = shaped(propexo.ErrorResponse, refused.json()).error
    assert error.details is not None
    assert [d["field"] for d in error.details["fields"]] == ["property_configuration_ids"]
    assert enabled() == {"p-1": False, "p-2": False, "p-3": True}
    empty = api.client.put(
        f"{path}/batch", json={"property_configuration_ids": [], "enabled": True}, headers=headers
    )
    assert empty.status_code == 400, empty.text


def test_property_lists_are_an_empty_list_and_none_can_be_configured(api: ApiHarness) -> None:
    """pmsq reads no property lists, so a configuration is refused with a 400 naming the
    field rather than accepted and never applied (before this change: 404, no such path)."""
    headers = account(api)
    integration_id = make_integration(api, headers)
    path = f"/v1/admin/integrations/{integration_id}/property-lists"
    listed = api.client.get(path, params={"limit": 10}, headers=headers)
    assert listed.status_code == 200, listed.text
    page = shaped(propexo.PropertyListConfigurationList, listed.json())
    assert (page.results, page.meta.total, page.meta.limit) == ([], 0, 10)
    created = api.client.post(
        path, json={"x_property_list_id": "12", "enabled": True}, headers=headers
    )
    assert created.status_code == 400, created.text
    error = shaped(propexo.ErrorResponse, created.json()).error
    assert error.details is not None
    assert [d["field"] for d in error.details["fields"]] == ["x_property_list_id"]
    updated = api.client.put(f"{path}/plc-1", json={"enabled": False}, headers=headers)
    assert updated.status_code == 404, updated.text
    shaped(propexo.ErrorResponse, updated.json())
    other = api.client.get(
        "/v1/admin/integrations/not-an-integration/property-lists", headers=headers
    )
    assert other.status_code == 404


# -- the OpenAPI document ------------------------------------------------------------------


def test_every_json_answer_in_the_openapi_document_is_a_typed_model(api: ApiHarness) -> None:
    """A client generated from /openapi.json gets a type for every answer, not a free-form
    object."""
    paths = api.client.get("/openapi.json").json()["paths"]
    free_form = sorted(
        (method.upper(), path, code)
        for path, operations in paths.items()
        for method, operation in operations.items()
        for code, response in operation["responses"].items()
        if code.startswith("2")
        and "$ref" not in str(response.get("content", {}).get("application/json", {}))
        and path != "/metrics"
    )
    assert free_form == []


def test_capabilities_take_propexos_vendor_spelling(api: ApiHarness) -> None:
    headers = account(api)
    propexo_spelling = api.client.get("/v1/admin/capabilities/RENTMANAGER", headers=headers)
    assert propexo_spelling.status_code == 200, propexo_spelling.text
    pmsq_spelling = api.client.get("/v1/admin/capabilities/RENT_MANAGER", headers=headers)
    assert propexo_spelling.json() == pmsq_spelling.json()

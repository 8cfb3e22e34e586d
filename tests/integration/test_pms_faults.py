"""The connector against a real sandbox process whose faults lose answers.

A re-attempt of a create whose answer was lost (a 502 after the write was applied, a connection
dropped after it, or before it) must leave exactly one record at the PMS and report that record,
and a new write equal to an existing record must still create its own. Resets need a real
server: only a server can break a connection, so the sandbox runs as `pmsq sandbox` here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from support.processes import sandbox_server
from support.services import free_port

from pmsq.errors import PmsError
from pmsq.pms.connector import Exchange, Step, StepResult
from pmsq.pms.http_connector import HttpConnector
from pmsq.pms.profiles import CREATE
from pmsq.pms.registry import VENDORS

PAYLOAD = {"last_name": "Curie", "email_1": "m@c.fr"}


class Sandbox:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=5)

    def fault(self, **rule: Any) -> None:
        response = self.http.post("/_sandbox/faults", json=rule)
        assert response.status_code == 201, response.text

    def records(self, tenant: str) -> list[dict[str, Any]]:
        response = self.http.get("/_sandbox/records", params={"tenant": tenant})
        return list(response.json()["records"])

    def requests(self, tenant: str) -> list[dict[str, Any]]:
        response = self.http.get("/_sandbox/requests", params={"tenant": tenant})
        return list(response.json()["requests"])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_server(free_port()) as url:
        sandbox = Sandbox(url)
        yield sandbox
        sandbox.http.close()


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def connector(sandbox: Sandbox, tenant: str, vendor: str, client: httpx.Client) -> HttpConnector:
    return VENDORS.get(vendor).connector(
        base_url=f"{sandbox.url}/t/{tenant}",
        credentials={"api_key": "secret-key-0123456789"},
        client=client,
    )


def attempts(pms: HttpConnector, step: Step) -> tuple[list[PmsError], StepResult]:
    """Attempt `step` until it succeeds, marking the outcome unknown as the runner does."""
    errors: list[PmsError] = []
    log: list[Exchange] = []
    while len(errors) < 5:
        try:
            return errors, pms.execute(step, log.append)
        except PmsError as error:
            errors.append(error)
            step = Step(
                step.model,
                step.action,
                step.target_id,
                step.payload,
                idempotency_key=step.idempotency_key,
                outcome_unknown=step.outcome_unknown or error.outcome_unknown,
                accepted_at=step.accepted_at,
            )
    raise AssertionError(f"no success after {errors}")


def new_create(key: str = "key-1") -> Step:
    return Step(
        "residents",
        CREATE,
        None,
        dict(PAYLOAD),
        idempotency_key=key,
        accepted_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("vendor", ["APPFOLIO", "RESMAN", "SANDBOX"])
@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "apply_then_status", "status": 502},
        {"kind": "apply_then_reset"},
    ],
)
def test_a_lost_answer_is_read_back_not_written_twice(
    sandbox: Sandbox, tenant: str, client: httpx.Client, vendor: str, fault: dict[str, Any]
) -> None:
    sandbox.fault(tenant=tenant, method="POST", model="residents", times=1, **fault)

    errors, result = attempts(connector(sandbox, tenant, vendor, client), new_create())

    assert [e.outcome_unknown for e in errors] == [True]
    records = sandbox.records(tenant)
    assert len(records) == 1, records
    assert result.created_record_id == records[0]["id"]
    first, *_ = sandbox.requests(tenant)
    assert (first["applied"], first["dropped"]) == (True, fault["kind"] == "apply_then_reset")


@pytest.mark.parametrize("vendor", ["APPFOLIO", "RESMAN"])
def test_a_reset_before_apply_is_read_back_then_written_once(
    sandbox: Sandbox, tenant: str, client: httpx.Client, vendor: str
) -> None:
    sandbox.fault(tenant=tenant, method="POST", model="residents", kind="reset", times=1)

    errors, result = attempts(connector(sandbox, tenant, vendor, client), new_create())

    assert [e.outcome_unknown for e in errors] == [True]
    records = sandbox.records(tenant)
    assert [r["id"] for r in records] == [result.created_record_id]
    assert [(r["method"], r["applied"], r["status"]) for r in sandbox.requests(tenant)] == [
        ("POST", False, 499),
        ("GET", False, 200),
        ("POST", True, 201),
    ]


@pytest.mark.parametrize("vendor", ["APPFOLIO", "RESMAN"])
def test_a_write_equal_to_an_existing_record_creates_its_own_even_when_unknown(
    sandbox: Sandbox, tenant: str, client: httpx.Client, vendor: str
) -> None:
    """A reclaimed job, or one whose connect timed out, must not report an older twin."""
    pms = connector(sandbox, tenant, vendor, client)
    older = pms.execute(new_create("key-old"), lambda exchange: None)
    unknown = Step(
        "residents",
        CREATE,
        None,
        dict(PAYLOAD),
        idempotency_key="key-new",
        outcome_unknown=True,
        accepted_at=datetime.now(UTC),
    )

    newer = pms.execute(unknown, lambda exchange: None)

    assert newer.created_record_id is not None
    assert newer.created_record_id != older.created_record_id
    assert len(sandbox.records(tenant)) == 2

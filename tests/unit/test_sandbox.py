"""The sandbox PMS: its dialect, idempotency memory, fault injection and request recording.

Driven in-process through httpx's ASGI transport (starlette's TestClient warns, and warnings
are errors here), so concurrent requests share one event loop just as under uvicorn.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Receive, Scope, Send

from pmsq.pms.sandbox import create_app
from pmsq.pms.sandbox.limits import TenantLimits
from pmsq.pms.sandbox.middleware import NO_ANSWER_STATUS, RecordingMiddleware
from pmsq.pms.sandbox.recorder import Recorder
from pmsq.pms.sandbox.state import SandboxState

pytestmark = pytest.mark.anyio

BASE = "/t/acme"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def state() -> SandboxState:
    return SandboxState()


@pytest.fixture
async def client(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as c:
        yield c


async def requests_log(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/_sandbox/requests", params=params)
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


async def add_fault(client: httpx.AsyncClient, **spec: Any) -> str:
    response = await client.post("/_sandbox/faults", json={"tenant": "acme", **spec})
    assert response.status_code == 201, response.text
    fault_id: str = response.json()["id"]
    return fault_id


# --- the PMS dialect ---------------------------------------------------------------------------


async def test_create_assigns_ids_per_tenant_and_model(client: httpx.AsyncClient) -> None:
    first = await client.post(f"{BASE}/residents", json={"last_name": "Ng", "id": "mine"})
    second = await client.post(f"{BASE}/residents", json={"last_name": "Ode"})
    unit = await client.post(f"{BASE}/units", json={"name": "1A"})
    other_tenant = await client.post("/t/other.co/residents", json={"last_name": "Ng"})

    assert first.status_code == 201
    assert first.json() == {"id": "residents-1", "last_name": "Ng"}
    assert second.json()["id"] == "residents-2"
    assert unit.json() == {"id": "units-1", "name": "1A"}
    assert other_tenant.json()["id"] == "residents-1"


async def test_read_update_delete(client: httpx.AsyncClient) -> None:
    await client.post(f"{BASE}/residents", json={"last_name": "Ng", "first_name": "Al"})

    read = await client.get(f"{BASE}/residents/residents-1")
    updated = await client.put(
        f"{BASE}/residents/residents-1", json={"first_name": "Bo", "id": "x", "unit": "2B"}
    )
    reread = await client.get(f"{BASE}/residents/residents-1")
    deleted = await client.delete(f"{BASE}/residents/residents-1")
    gone = await client.get(f"{BASE}/residents/residents-1")

    assert read.json() == {"id": "residents-1", "last_name": "Ng", "first_name": "Al"}
    assert updated.status_code == 200
    assert updated.json() == {
        "id": "residents-1",
        "last_name": "Ng",
        "first_name": "Bo",
        "unit": "2B",
    }
    assert reread.json() == updated.json()
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert gone.status_code == 404
    assert gone.json() == {"error": "residents/residents-1 not found"}


async def test_missing_records_answer_404_naming_them(client: httpx.AsyncClient) -> None:
    put = await client.put(f"{BASE}/residents/residents-9", json={"first_name": "Bo"})
    delete = await client.delete(f"{BASE}/leases/leases-3")

    assert put.status_code == 404
    assert put.json() == {"error": "residents/residents-9 not found"}
    assert delete.status_code == 404
    assert delete.json() == {"error": "leases/leases-3 not found"}


async def test_list_pages_in_creation_order(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await client.post(f"{BASE}/units", json={"name": f"u{n}"})

    first = (await client.get(f"{BASE}/units", params={"page": 1, "page_size": 2})).json()
    last = (await client.get(f"{BASE}/units", params={"page": 3, "page_size": 2})).json()
    default = (await client.get(f"{BASE}/units")).json()

    assert [r["name"] for r in first["results"]] == ["u0", "u1"]
    assert first["has_more"] is True
    assert (first["page"], first["page_size"]) == (1, 2)
    assert [r["name"] for r in last["results"]] == ["u4"]
    assert last["has_more"] is False
    assert (default["page"], default["page_size"], len(default["results"])) == (1, 100, 5)


async def test_list_filters_by_string_equality(client: httpx.AsyncClient) -> None:
    await client.post(f"{BASE}/units", json={"name": "a", "floor": 3, "city": "Oslo"})
    await client.post(f"{BASE}/units", json={"name": "b", "floor": 4, "city": "Oslo"})
    await client.post(f"{BASE}/units", json={"name": "c", "floor": 3, "city": "Rome"})

    async def names(**params: Any) -> list[str]:
        body = (await client.get(f"{BASE}/units", params=params)).json()
        return [r["name"] for r in body["results"]]

    assert await names(city="Oslo") == ["a", "b"]
    assert await names(city="Oslo", floor="3") == ["a"]
    assert await names(wing="east") == []


async def test_list_rejects_bad_paging(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/units", params={"page": 0})

    assert response.status_code == 422
    assert "page" in response.json()["error"]


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        ("residents", {"first_name": "Al"}, "last_name is required"),
        ("applicants", {"last_name": "  "}, "last_name is required"),
        (
            "leases",
            {"email_1": "nobody.example.com"},
            "email_1 'nobody.example.com' is not a valid email address",
        ),
        ("units", {"phone_1": "555-CALL"}, "phone_1 '555-CALL' is not a valid phone number"),
        ("contacts", {"applicant_id": "app-7"}, "applicant_id 'app-7' does not exist"),
        ("contacts", {"name": "x"}, "applicant_id is required"),
    ],
)
async def test_create_rejects_invalid_bodies(
    client: httpx.AsyncClient, state: SandboxState, model: str, body: Any, message: str
) -> None:
    response = await client.post(f"{BASE}/{model}", json=body)

    assert response.status_code == 422
    assert response.json() == {"error": message}
    assert state.store.dump() == []


@pytest.mark.parametrize("raw", [b"[1, 2]", b"not json", b"", b'"text"'])
async def test_body_must_be_a_json_object(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(f"{BASE}/units", content=raw)

    assert response.status_code == 422
    assert response.json() == {"error": "request body must be a JSON object"}


async def test_decorated_phone_and_known_applicant_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    applicant = await client.post(
        f"{BASE}/applicants", json={"last_name": "Ng", "phone_1": "+1 (555) 123-4567"}
    )
    contact = await client.post(
        f"{BASE}/contacts", json={"applicant_id": "applicants-1", "email_1": "a@b.c"}
    )
    other_tenant = await client.post("/t/other/contacts", json={"applicant_id": "applicants-1"})

    assert applicant.status_code == 201
    assert contact.status_code == 201
    assert contact.json()["applicant_id"] == "applicants-1"
    assert other_tenant.status_code == 422


async def test_update_checks_fields_but_not_required_ones(client: httpx.AsyncClient) -> None:
    await client.post(f"{BASE}/residents", json={"last_name": "Ng", "email_1": "a@b.c"})

    bad = await client.put(f"{BASE}/residents/residents-1", json={"email_1": "nope"})
    partial = await client.put(f"{BASE}/residents/residents-1", json={"phone_1": "5551234"})

    assert bad.status_code == 422
    assert bad.json() == {"error": "email_1 'nope' is not a valid email address"}
    assert partial.status_code == 200
    assert partial.json()["email_1"] == "a@b.c"


async def test_validate_checks_without_creating(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    ok = await client.post(f"{BASE}/residents/validate", json={"last_name": "Ng"})
    bad = await client.post(f"{BASE}/residents/validate", json={"email_1": "a@b.c"})

    assert ok.status_code == 200
    assert ok.json() == {"valid": True}
    assert bad.status_code == 422
    assert bad.json() == {"error": "last_name is required"}
    assert state.store.dump() == []


# --- idempotency -------------------------------------------------------------------------------


async def test_keyed_post_is_replayed_without_writing_again(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    key = {"Idempotency-Key": "k-1"}
    first = await client.post(f"{BASE}/residents", json={"last_name": "Ng"}, headers=key)
    again = await client.post(f"{BASE}/residents", json={"last_name": "Other"}, headers=key)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"id": "residents-1", "last_name": "Ng"}
    assert "idempotent-replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert state.store.dump(tenant="acme") == [{"id": "residents-1", "last_name": "Ng"}]
    log = await requests_log(client)
    assert [(e["applied"], e["replayed"], e["record_id"]) for e in log] == [
        (True, False, "residents-1"),
        (False, True, "residents-1"),
    ]
    assert [e["idempotency_key"] for e in log] == ["k-1", "k-1"]


async def test_keyed_put_replay_does_not_overwrite_later_changes(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    await client.post(f"{BASE}/residents", json={"last_name": "Ng"})
    key = {"Idempotency-Key": "put-1"}
    path = f"{BASE}/residents/residents-1"

    first = await client.put(path, json={"unit": "1A"}, headers=key)
    await client.put(path, json={"unit": "2B"})
    replay = await client.put(path, json={"unit": "1A"}, headers=key)

    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert state.store.get("acme", "residents", "residents-1")["unit"] == "2B"


async def test_errors_are_not_remembered(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "k-err"}
    rejected = await client.post(f"{BASE}/residents", json={}, headers=key)
    accepted = await client.post(f"{BASE}/residents", json={"last_name": "Ng"}, headers=key)

    assert rejected.status_code == 422
    assert accepted.status_code == 201
    assert "idempotent-replayed" not in accepted.headers


async def test_keys_are_scoped_per_tenant(client: httpx.AsyncClient, state: SandboxState) -> None:
    key = {"Idempotency-Key": "shared"}
    await client.post(f"{BASE}/units", json={"name": "a"}, headers=key)
    other = await client.post("/t/other/units", json={"name": "b"}, headers=key)

    assert "idempotent-replayed" not in other.headers
    assert state.store.dump(tenant="other") == [{"id": "units-1", "name": "b"}]


async def test_validate_is_not_remembered_under_the_create_key(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    key = {"Idempotency-Key": "k-v"}
    await client.post(f"{BASE}/residents/validate", json={"last_name": "Ng"}, headers=key)
    created = await client.post(f"{BASE}/residents", json={"last_name": "Ng"}, headers=key)

    assert created.status_code == 201
    assert created.json() == {"id": "residents-1", "last_name": "Ng"}
    assert len(state.store.dump()) == 1


# --- faults ------------------------------------------------------------------------------------


async def test_status_fault_counts_down_and_does_not_write(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    await add_fault(client, method="post", model="residents", kind="status", status=503, times=2)

    unmatched = await client.post(f"{BASE}/units", json={"name": "a"})
    statuses = [
        (await client.post(f"{BASE}/residents", json={"last_name": "Ng"})).status_code
        for _ in range(3)
    ]

    assert unmatched.status_code == 201
    assert statuses == [503, 503, 201]
    assert [r["id"] for r in state.store.dump(model="residents")] == ["residents-1"]
    assert (await client.get("/_sandbox/faults")).json() == {"faults": []}
    log = await requests_log(client)
    assert [(e["status"], e["applied"]) for e in log[1:]] == [
        (503, False),
        (503, False),
        (201, True),
    ]


async def test_status_fault_carries_message_and_matches_path(client: httpx.AsyncClient) -> None:
    await add_fault(client, path_contains="/validate", kind="status", status=500, message="boom")

    create = await client.post(f"{BASE}/residents", json={"last_name": "Ng"})
    validate = await client.post(f"{BASE}/residents/validate", json={"last_name": "Ng"})
    other_tenant = await client.post("/t/other/residents/validate", json={"last_name": "Ng"})

    assert create.status_code == 201
    assert validate.status_code == 500
    assert validate.json() == {"error": "boom"}
    assert other_tenant.status_code == 200


async def test_status_fault_wins_over_replay(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "k-f"}
    await client.post(f"{BASE}/units", json={"name": "a"}, headers=key)
    await add_fault(client, kind="status", status=502, times=1)

    faulted = await client.post(f"{BASE}/units", json={"name": "a"}, headers=key)
    replayed = await client.post(f"{BASE}/units", json={"name": "a"}, headers=key)

    assert faulted.status_code == 502
    assert replayed.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(("retry_after_s", "header"), [(2.0, "2"), (0.5, "0.5"), (1, "1")])
async def test_429_fault_sends_retry_after(
    client: httpx.AsyncClient, retry_after_s: float, header: str
) -> None:
    await add_fault(client, kind="status", status=429, retry_after_s=retry_after_s)

    response = await client.post(f"{BASE}/units", json={"name": "a"})

    assert response.status_code == 429
    assert response.headers["Retry-After"] == header
    assert response.json() == {"error": "Too Many Requests"}


async def test_non_429_fault_has_no_retry_after(client: httpx.AsyncClient) -> None:
    await add_fault(client, kind="status", status=503, retry_after_s=3)

    response = await client.post(f"{BASE}/units", json={"name": "a"})

    assert response.status_code == 503
    assert "retry-after" not in response.headers


async def test_latency_fault_applies_then_answers_late(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    await add_fault(client, kind="latency", latency_ms=50, times=1)

    response = await client.post(f"{BASE}/units", json={"name": "a"})

    assert response.status_code == 201
    assert state.store.dump() == [{"id": "units-1", "name": "a"}]
    (entry,) = await requests_log(client)
    assert entry["applied"] is True
    assert entry["ended_at"] - entry["started_at"] >= 0.05


async def test_retry_during_slow_commit_is_replayed_not_reapplied(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    """A client that times out and retries while the PMS sleeps must not write twice."""
    await add_fault(client, kind="latency", latency_ms=300, times=1)
    key = {"Idempotency-Key": "slow-1"}
    statuses: list[int] = []

    async def post() -> None:
        response = await client.post(f"{BASE}/units", json={"name": "a"}, headers=key)
        statuses.append(response.status_code)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(post)
        await anyio.sleep(0.05)
        tasks.start_soon(post)

    assert statuses == [201, 201]
    assert len(state.store.dump()) == 1
    first, retry = await requests_log(client)
    assert (first["applied"], first["replayed"]) == (True, False)
    assert (retry["applied"], retry["replayed"]) == (False, True)
    assert retry["ended_at"] < first["ended_at"]


async def test_apply_then_status_applies_and_answers_the_error(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    """The answer is lost at a gateway: the write happened, the client only sees a 502."""
    await add_fault(client, method="post", kind="apply_then_status", status=502, times=1)
    key = {"Idempotency-Key": "lost-1"}

    lost = await client.post(f"{BASE}/units", json={"name": "a"}, headers=key)
    retried = await client.post(f"{BASE}/units", json={"name": "a"}, headers=key)

    assert lost.status_code == 502
    assert lost.json() == {"error": "Bad Gateway"}
    assert (retried.status_code, retried.headers["Idempotent-Replayed"]) == (201, "true")
    assert state.store.dump() == [{"id": "units-1", "name": "a"}]
    first, second = await requests_log(client)
    assert (first["status"], first["applied"], first["record_id"]) == (502, True, "units-1")
    assert (second["applied"], second["replayed"]) == (False, True)


async def test_a_status_fault_with_latency_answers_late_without_applying(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    await add_fault(client, kind="status", status=503, latency_ms=50, times=1)

    response = await client.post(f"{BASE}/units", json={"name": "a"})

    assert response.status_code == 503
    assert state.store.dump() == []
    (entry,) = await requests_log(client)
    assert entry["applied"] is False
    assert entry["ended_at"] - entry["started_at"] >= 0.05


async def test_429_without_times_answers_forever(client: httpx.AsyncClient) -> None:
    await add_fault(client, kind="status", status=429, retry_after_s=1)

    statuses = [
        (await client.post(f"{BASE}/units", json={"name": "a"})).status_code for _ in range(5)
    ]

    assert statuses == [429] * 5
    (rule,) = (await client.get("/_sandbox/faults")).json()["faults"]
    assert rule["remaining"] is None


async def test_probability_fires_on_a_seeded_share_and_passes_the_rest_on(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    """A rule that does not fire lets the request through to later rules; a seed replays it."""
    await add_fault(client, kind="apply_then_status", status=502, probability=0.3, seed=7)
    await add_fault(client, kind="status", status=503, times=1)

    statuses = [
        (await client.post(f"{BASE}/units", json={"name": "a"})).status_code for _ in range(40)
    ]

    fired = statuses.count(502)
    assert 4 <= fired <= 20, statuses
    assert statuses.count(503) == 1
    assert statuses.index(503) == min(i for i, s in enumerate(statuses) if s != 502)
    assert len(state.store.dump()) == 39  # every request but the one the 503 refused
    replay = SandboxState()
    transport = httpx.ASGITransport(app=create_app(replay))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as again:
        await add_fault(again, kind="apply_then_status", status=502, probability=0.3, seed=7)
        await add_fault(again, kind="status", status=503, times=1)
        replayed = [
            (await again.post(f"{BASE}/units", json={"name": "a"})).status_code for _ in range(40)
        ]
    assert replayed == statuses


async def test_list_narrows_by_creation_time(client: httpx.AsyncClient) -> None:
    await client.post(f"{BASE}/units", json={"name": "a"})
    log = await requests_log(client)
    after_first = datetime.fromtimestamp(log[-1]["ended_at"], UTC).isoformat()
    await client.post(f"{BASE}/units", json={"name": "a"})

    recent = await client.get(f"{BASE}/units", params={"created_after": after_first, "name": "a"})
    everything = await client.get(
        f"{BASE}/units", params={"created_after": "2000-01-01T00:00:00+00:00"}
    )
    naive = await client.get(f"{BASE}/units", params={"created_after": "2000-01-01T00:00:00"})

    assert [r["id"] for r in recent.json()["results"]] == ["units-2"]
    assert [r["id"] for r in everything.json()["results"]] == ["units-1", "units-2"]
    assert naive.status_code == 422
    assert "created_after" in naive.json()["error"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "status", "colour": "red"}, "colour"),
        ({"kind": "status"}, "status"),
        ({"kind": "latency"}, "latency_ms"),
        ({"kind": "explode", "status": 500}, "kind"),
        ({"kind": "status", "status": 500, "times": 0}, "times"),
        ({"kind": "apply_then_status"}, "status"),
        ({"kind": "reset", "probability": 0}, "probability"),
        ({"kind": "reset", "probability": 1.5}, "probability"),
    ],
)
async def test_fault_spec_is_validated(
    client: httpx.AsyncClient, spec: dict[str, Any], field: str
) -> None:
    response = await client.post("/_sandbox/faults", json={"tenant": "acme", **spec})

    assert response.status_code == 422
    assert field in response.json()["error"]


async def test_faults_can_be_listed_and_cleared_per_tenant(client: httpx.AsyncClient) -> None:
    acme_id = await add_fault(client, kind="status", status=500, times=3)
    await client.post("/_sandbox/faults", json={"tenant": "beta", "kind": "status", "status": 500})

    listed = (await client.get("/_sandbox/faults")).json()["faults"]
    cleared = await client.delete("/_sandbox/faults", params={"tenant": "beta"})
    remaining = (await client.get("/_sandbox/faults")).json()["faults"]

    assert [(f["tenant"], f["remaining"]) for f in listed] == [("acme", 3), ("beta", None)]
    assert cleared.json() == {"deleted": 1}
    assert [f["id"] for f in remaining] == [acme_id]


# --- rate-limit headers ------------------------------------------------------------------------


async def test_rate_limit_headers_only_on_writes_of_limited_tenants(
    client: httpx.AsyncClient,
) -> None:
    before = await client.post(f"{BASE}/units", json={"name": "a"})
    limited = await client.post("/_sandbox/tenants/acme/limits", json={"requests_per_s": 5})
    first = await client.post(f"{BASE}/units", json={"name": "b"})
    second = await client.put(f"{BASE}/units/units-1", json={"name": "c"})
    read = await client.get(f"{BASE}/units/units-1")
    other = await client.post("/t/other/units", json={"name": "d"})

    assert limited.status_code == 200
    assert "x-ratelimit-limit" not in before.headers
    assert first.headers["X-RateLimit-Limit"] == "5"
    assert int(second.headers["X-RateLimit-Remaining"]) < int(
        first.headers["X-RateLimit-Remaining"]
    )
    assert "x-ratelimit-limit" not in read.headers
    assert "x-ratelimit-limit" not in other.headers


# --- recording ---------------------------------------------------------------------------------


async def test_requests_are_recorded_in_order(client: httpx.AsyncClient) -> None:
    await client.post(f"{BASE}/units", json={"name": "a"})
    await client.get(f"{BASE}/units/units-1")
    await client.get("/_sandbox/health")
    await client.post("/t/other/units", json={"name": "b"})
    await client.delete(f"{BASE}/units/units-1")

    log = await requests_log(client)

    assert [e["seq"] for e in log] == [1, 2, 3, 4]
    assert [(e["tenant"], e["method"], e["path"], e["status"]) for e in log] == [
        ("acme", "POST", "/t/acme/units", 201),
        ("acme", "GET", "/t/acme/units/units-1", 200),
        ("other", "POST", "/t/other/units", 201),
        ("acme", "DELETE", "/t/acme/units/units-1", 204),
    ]
    assert [e["applied"] for e in log] == [True, False, True, True]
    assert log[3]["record_id"] == "units-1"
    assert all(e["model"] == "units" for e in log)
    assert all(e["started_at"] <= e["ended_at"] for e in log)
    assert all(a["started_at"] <= b["started_at"] for a, b in itertools.pairwise(log))
    assert [e["seq"] for e in await requests_log(client, tenant="acme", since_seq=1)] == [2, 4]


async def test_unroutable_pms_paths_are_recorded_too(client: httpx.AsyncClient) -> None:
    await client.get("/t/acme")
    await client.get("/t/acme/Units")

    log = await requests_log(client)

    assert [(e["path"], e["model"], e["status"]) for e in log] == [
        ("/t/acme", None, 404),
        ("/t/acme/Units", None, 422),
    ]


async def test_clearing_requests_keeps_seq_but_reset_restarts_it(
    client: httpx.AsyncClient,
) -> None:
    await client.post(f"{BASE}/units", json={"name": "a"})
    await client.delete("/_sandbox/requests")
    await client.post(f"{BASE}/units", json={"name": "b"})
    after_clear = await requests_log(client)
    await client.post("/_sandbox/reset")
    await client.get(f"{BASE}/units/units-1")
    after_reset = await requests_log(client)

    assert [e["seq"] for e in after_clear] == [2]
    assert [(e["seq"], e["status"]) for e in after_reset] == [(1, 404)]


async def test_records_endpoint_dumps_the_store(client: httpx.AsyncClient) -> None:
    await client.post(f"{BASE}/units", json={"name": "a"})
    await client.post(f"{BASE}/residents", json={"last_name": "Ng"})
    await client.post("/t/other/units", json={"name": "b"})

    response = await client.get("/_sandbox/records", params={"tenant": "acme", "model": "units"})

    assert response.json() == {"records": [{"id": "units-1", "name": "a"}]}


async def test_request_without_an_answer_is_still_recorded() -> None:
    """A handler cut off mid-way (cancelled, or its client gone) must still leave an entry."""
    recorder = Recorder()

    async def never_answers(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.sleep_forever()

    async def no_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def discard(message: Any) -> None:
        raise AssertionError("nothing should be sent")

    middleware = RecordingMiddleware(never_answers, recorder, TenantLimits())
    scope = {"type": "http", "method": "POST", "path": "/t/acme/units", "headers": []}
    with anyio.move_on_after(0.02):
        await middleware(scope, no_body, discard)

    (entry,) = recorder.entries()
    assert entry.status == NO_ANSWER_STATUS
    assert entry.ended_at is not None
    assert entry.ended_at >= entry.started_at

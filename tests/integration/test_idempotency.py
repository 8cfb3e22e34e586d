"""Idempotency-Key on the write endpoints, on SQLite and PostgreSQL alike.

Same key and body replays the first answer; another body is 422; a key still in flight is
409; keys are per account; a refused (400) request releases its key. The key commits with its
write: an enqueue failure after the commit still answers the job (and the orphan sweep runs
it), concurrent first requests make one write, and a key expires after its TTL.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness
from support.processes import wait_until

from pmsq.api.auth import account_for
from pmsq.api.services.idempotency import IN_FLIGHT_RELEASE_S, IdempotencyKeys, fingerprint
from pmsq.models.base import utcnow
from pmsq.models.enums import JobStatus
from pmsq.models.idempotency import IdempotencyRecord
from pmsq.models.job import Job
from pmsq.settings import Settings
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.healing import ORPHAN_AGE_S, Healer

TTL_S = 86_400.0


class Clock:
    """The API's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(
    database_url: str, session_factory: sessionmaker[Session], clock: Clock
) -> Iterator[ApiHarness]:
    with api_harness(database_url, session_factory, clock=clock) as harness:
        yield harness


def account(api: ApiHarness) -> dict[str, str]:
    return api.token(f"acct-{uuid.uuid4().hex[:12]}")


def account_id(api: ApiHarness, headers: dict[str, str]) -> str:
    with api.session_factory() as session:
        return account_for(session, headers["Authorization"])


def make_integration(api: ApiHarness, headers: dict[str, str]) -> str:
    body = {
        "name": "idempotent",
        "integration_vendor": "SANDBOX",
        "active": True,
        "base_url": "http://127.0.0.1:9/t/x",
        "max_request_frequency": 1000,
        "max_job_concurrency": 100,
    }
    response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["id"])


def jobs_of(api: ApiHarness, integration_id: str) -> int:
    with api.session_factory() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Job).where(Job.integration_id == integration_id)
            )
            or 0
        )


def published_of(api: ApiHarness, integration_id: str) -> list[str]:
    return [p.job_id for p in api.publisher.published if p.integration_id == integration_id]


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{uuid.uuid4()}"}


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_same_key_and_body_replays_the_first_answer(api: ApiHarness, method: str) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    path = "/v1/residents/" if method == "POST" else "/v1/residents/pms-42"
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    same = {**headers, **key()}
    first = api.client.request(method, path, json=body, headers=same)
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    for _ in range(2):
        again = api.client.request(method, path, json=body, headers=same)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
    assert jobs_of(api, integration_id) == 1
    assert published_of(api, integration_id) == [first.json()["job_id"]]


def test_the_same_body_with_keys_reordered_is_the_same_request(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    same = {**headers, **key()}
    first = api.client.post(
        "/v1/residents/",
        content=f'{{"integration_id": "{integration_id}", "last_name": "A", "email_1": "a@b.c"}}',
        headers={**same, "Content-Type": "application/json"},
    )
    again = api.client.post(
        "/v1/residents/",
        content=f'{{"email_1":"a@b.c","last_name":"A","integration_id":"{integration_id}"}}',
        headers={**same, "Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["job_id"] == first.json()["job_id"]
    assert jobs_of(api, integration_id) == 1


@pytest.mark.parametrize(
    ("method", "path", "params", "changed"),
    [
        ("POST", "/v1/residents/", None, {"last_name": "Hopper"}),
        ("POST", "/v1/residents/", {"ignore_unknown_fields": "true"}, {}),
        ("POST", "/v1/applicants/", None, {}),
        ("PUT", "/v1/residents/pms-1", None, {}),
    ],
    ids=["other-body", "other-query", "other-path", "other-method"],
)
def test_same_key_with_another_request_is_422_naming_the_header(
    api: ApiHarness,
    method: str,
    path: str,
    params: dict[str, str] | None,
    changed: dict[str, Any],
) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    same = {**headers, **key()}
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    first = api.client.post("/v1/residents/", json=body, headers=same)
    assert first.status_code == 200
    refused = api.client.request(
        method, path, json={**body, **changed}, params=params, headers=same
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert "Idempotency-Key" in {d["field"] for d in error["details"]["fields"]}
    assert "Idempotent-Replayed" not in refused.headers
    assert jobs_of(api, integration_id) == 1
    assert published_of(api, integration_id) == [first.json()["job_id"]]


def add_unanswered_key(
    api: ApiHarness, headers: dict[str, str], key_value: str, body: Any, age_s: float
) -> None:
    """A key reserved without an answer, as an earlier version's crash between its reserve and
    answer transactions left it."""
    with api.session_factory.begin() as session:
        session.add(
            IdempotencyRecord(
                account_id=account_for(session, headers["Authorization"]),
                key=key_value,
                request_sha256=fingerprint("POST", "/v1/residents/", "", body),
                created_at=utcnow() - timedelta(seconds=age_s),
            )
        )


def test_a_key_still_in_flight_is_409(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    in_flight = key()
    add_unanswered_key(api, headers, in_flight["Idempotency-Key"], body, age_s=0)
    refused = api.client.post("/v1/residents/", json=body, headers={**headers, **in_flight})
    assert refused.status_code == 409, refused.text
    assert "Idempotency-Key" in {d["field"] for d in refused.json()["error"]["details"]["fields"]}
    assert jobs_of(api, integration_id) == 0
    assert published_of(api, integration_id) == []


def test_a_key_left_in_flight_by_a_crash_is_released_after_the_bound(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    stuck = key()
    add_unanswered_key(api, headers, stuck["Idempotency-Key"], body, IN_FLIGHT_RELEASE_S + 1)
    accepted = api.client.post("/v1/residents/", json=body, headers={**headers, **stuck})
    assert accepted.status_code == 200, accepted.text
    assert "Idempotent-Replayed" not in accepted.headers
    replay = api.client.post("/v1/residents/", json=body, headers={**headers, **stuck})
    assert replay.status_code == 200, replay.text
    assert replay.json() == accepted.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert jobs_of(api, integration_id) == 1


@pytest.mark.parametrize("with_key", [True, False], ids=["with-key", "without-key"])
def test_an_enqueue_failure_after_commit_answers_the_job_and_the_sweep_runs_it(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch, with_key: bool
) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    same = {**headers, **key()} if with_key else headers

    def redis_down(*_args: object, **_kwargs: object) -> None:
        raise redis.ConnectionError("Redis went away")

    with monkeypatch.context() as patched:
        patched.setattr(api.flow, "submit", redis_down)  # enqueue and admit, one round trip
        first = api.client.post("/v1/residents/", json=body, headers=same)
    assert first.status_code == 200, first.text
    job_id = first.json()["job_id"]
    assert published_of(api, integration_id) == []
    if with_key:
        again = api.client.post("/v1/residents/", json=body, headers=same)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
    assert jobs_of(api, integration_id) == 1
    with api.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.is_root, job.status) == (True, JobStatus.PENDING.value)

    # The dispatcher's orphan sweep finds the stored job missing from Redis and admits it.
    later = utcnow() + timedelta(seconds=ORPHAN_AGE_S + 1)
    dispatcher = Dispatcher(
        api.session_factory, api.publisher, api.flow, Settings(), clock=lambda: later
    )
    healer = Healer(api.session_factory, dispatcher, Settings(), clock=lambda: later)
    assert healer.enqueue_orphans() >= 1
    assert published_of(api, integration_id) == [job_id]
    with api.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status == JobStatus.QUEUED.value


def test_a_repeat_after_the_key_expired_is_a_new_write(api: ApiHarness, clock: Clock) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    same = {**headers, **key()}
    first = api.client.post("/v1/residents/", json=body, headers=same)
    assert first.status_code == 200, first.text

    # A minute's margin either side of the expiry: the clock is real time plus an offset, so
    # the requests' own time (seconds on a loaded machine) must not carry one across it.
    clock.advance(TTL_S - 60)
    replay = api.client.post("/v1/residents/", json=body, headers=same)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == first.json()

    clock.advance(120)
    fresh = api.client.post("/v1/residents/", json=body, headers=same)
    assert fresh.status_code == 200, fresh.text
    assert "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["job_id"] != first.json()["job_id"]
    assert jobs_of(api, integration_id) == 2
    # The key now answers for the new write.
    again = api.client.post("/v1/residents/", json=body, headers=same)
    assert again.json() == fresh.json()
    assert again.headers["Idempotent-Replayed"] == "true"


def test_an_expired_key_may_come_back_with_another_body(api: ApiHarness, clock: Clock) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    same = {**headers, **key()}
    first = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, "last_name": "A"}, headers=same
    )
    assert first.status_code == 200, first.text
    clock.advance(TTL_S)
    other = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, "last_name": "B"}, headers=same
    )
    assert other.status_code == 200, other.text
    assert jobs_of(api, integration_id) == 2


def test_concurrent_first_requests_with_one_key_make_one_write(api: ApiHarness) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    same = {**headers, **key()}
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(lambda _: api.client.post("/v1/residents/", json=body, headers=same), range(6))
        )
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["job_id"] for a in answers}) == 1
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert jobs_of(api, integration_id) == 1


@pytest.mark.parametrize("loser_body", ["same", "other"])
def test_a_request_losing_the_race_for_its_key_replays_or_is_422(
    api: ApiHarness, database_url: str, monkeypatch: pytest.MonkeyPatch, loser_body: str
) -> None:
    """Both requests look the key up before either stores it: the unique constraint decides."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs write transactions one at a time: no two lookups both miss")
    headers = account(api)
    integration_id = make_integration(api, headers)
    bodies = [{"integration_id": integration_id, "last_name": "A"}]
    bodies.append(bodies[0] if loser_body == "same" else {**bodies[0], "last_name": "B"})
    same = {**headers, **key()}
    both_missed = threading.Barrier(2, timeout=30)
    lookup = IdempotencyKeys.lookup
    misses = iter(range(2))

    def lookup_then_meet(self: IdempotencyKeys, *args: Any) -> Any:
        found = lookup(self, *args)
        if found is None and next(misses, None) is not None:
            both_missed.wait()
        return found

    monkeypatch.setattr(IdempotencyKeys, "lookup", lookup_then_meet)

    def post(body: dict[str, Any]) -> httpx.Response:
        return api.client.post("/v1/residents/", json=body, headers=same)

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(post, bodies))
    assert jobs_of(api, integration_id) == 1
    codes = sorted(a.status_code for a in answers)
    if loser_body == "same":
        assert codes == [200, 200], [a.text for a in answers]
        assert answers[0].json() == answers[1].json()
        assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 1
    else:
        assert codes == [200, 422], [a.text for a in answers]


def test_keys_are_per_account(api: ApiHarness) -> None:
    acme, globex = account(api), account(api)
    shared = key()
    answers = []
    for headers in (acme, globex):
        integration_id = make_integration(api, headers)
        response = api.client.post(
            "/v1/residents/",
            json={"integration_id": integration_id, "last_name": "Lovelace"},
            headers={**headers, **shared},
        )
        assert response.status_code == 200, response.text
        assert "Idempotent-Replayed" not in response.headers
        assert jobs_of(api, integration_id) == 1
        answers.append(response.json()["job_id"])
    assert answers[0] != answers[1]
    # Each account's replay is its own first answer.
    for headers, job_id in zip((acme, globex), answers, strict=True):
        status = api.client.get(f"/v1/admin/write-status/{job_id}", headers=headers)
        assert status.status_code == 200


def test_a_key_used_by_another_account_with_another_body_is_not_422(api: ApiHarness) -> None:
    acme, globex = account(api), account(api)
    shared = key()
    first = api.client.post(
        "/v1/residents/",
        json={"integration_id": make_integration(api, acme), "last_name": "A"},
        headers={**acme, **shared},
    )
    second = api.client.post(
        "/v1/residents/",
        json={"integration_id": make_integration(api, globex), "last_name": "B"},
        headers={**globex, **shared},
    )
    assert (first.status_code, second.status_code) == (200, 200), second.text


@pytest.mark.parametrize(
    ("bad", "fixed"),
    [
        ({"last_name": 5}, {"last_name": "Lovelace"}),
        ({"last_name": "Lovelace", "starship": "x"}, {"last_name": "Lovelace"}),
    ],
    ids=["wrong-type", "unknown-field"],
)
def test_a_refused_request_releases_its_key(
    api: ApiHarness, bad: dict[str, Any], fixed: dict[str, Any]
) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    same = {**headers, **key()}
    refused = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, **bad}, headers=same
    )
    assert refused.status_code == 400, refused.text
    with api.session_factory() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(IdempotencyRecord)
                .where(IdempotencyRecord.key == same["Idempotency-Key"])
            )
            == 0
        )
    accepted = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, **fixed}, headers=same
    )
    assert accepted.status_code == 200, accepted.text
    assert "Idempotent-Replayed" not in accepted.headers
    assert jobs_of(api, integration_id) == 1
    replay = api.client.post(
        "/v1/residents/", json={"integration_id": integration_id, **fixed}, headers=same
    )
    assert replay.json() == accepted.json()
    assert replay.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("value", ["", "k" * 256], ids=["empty", "too-long"])
def test_an_unusable_key_is_400_naming_the_header(api: ApiHarness, value: str) -> None:
    headers = account(api)
    integration_id = make_integration(api, headers)
    refused = api.client.post(
        "/v1/residents/",
        json={"integration_id": integration_id, "last_name": "A"},
        headers={**headers, "Idempotency-Key": value},
    )
    assert refused.status_code == 400, refused.text
    assert "Idempotency-Key" in {d["field"] for d in refused.json()["error"]["details"]["fields"]}
    assert jobs_of(api, integration_id) == 0


def test_an_expired_key_purged_while_a_repeat_takes_it_over_is_a_new_write(
    api: ApiHarness, database_url: str, clock: Clock
) -> None:
    """The repeat reads the expired record, then waits on the purge's delete of it; when the
    purge commits, the repeat's own delete finds nothing, which is just as good."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs write transactions one at a time: a purge cannot interleave")
    headers = account(api)
    integration_id = make_integration(api, headers)
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    same = {**headers, **key()}
    first = api.client.post("/v1/residents/", json=body, headers=same)
    assert first.status_code == 200, first.text
    clock.advance(TTL_S)
    with ThreadPoolExecutor(max_workers=1) as pool:
        with api.session_factory.begin() as purge:
            purge.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.key == same["Idempotency-Key"])
            )
            repeat = pool.submit(api.client.post, "/v1/residents/", json=body, headers=same)

            def repeat_waits_on_a_lock() -> bool:
                with api.session_factory() as session:
                    waiting = session.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                    )
                return bool(waiting) or repeat.done()

            wait_until(repeat_waits_on_a_lock, deadline_s=30, message="the repeat waits")
            assert not repeat.done(), repeat.result().text
        # The purge commits here; the repeat's delete then finds nothing and goes on.
        fresh = repeat.result(timeout=30)
    assert fresh.status_code == 200, fresh.text
    assert "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["job_id"] != first.json()["job_id"]
    assert jobs_of(api, integration_id) == 2

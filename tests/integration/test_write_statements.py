"""What a write request sends to the job store, on every backend: once its token and its
integration are known to the API process, a write is the root job's INSERT and nothing else
(with an Idempotency-Key, the key's lookup and insert too). The integration the process
remembers is never one the database would refuse: a change made a moment ago by another
process (the integration disabled, archived, deleted, given another vendor or another default
for new properties) is seen by the next write.

Admission is left out (a recording submitter): in `pmsq api` it runs on threads of its own,
after the answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness

from pmsq.api.services.write_targets import WriteTarget
from pmsq.api.services.writes import MAX_JUDGEMENTS
from pmsq.models.base import utcnow
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.record import Record


@dataclass
class RecordingSubmitter:
    submitted: list[tuple[str, list[str]]] = field(default_factory=list)

    def submit(self, integration_id: str, job_ids: Sequence[str]) -> None:
        self.submitted.append((integration_id, list(job_ids)))


@pytest.fixture
def submitter() -> RecordingSubmitter:
    return RecordingSubmitter()


@pytest.fixture
def api(
    database_url: str, session_factory: sessionmaker[Session], submitter: RecordingSubmitter
) -> Iterator[ApiHarness]:
    with api_harness(
        database_url, session_factory, submitter=lambda _dispatcher: submitter
    ) as harness:
        yield harness


@pytest.fixture
def statements(session_factory: sessionmaker[Session]) -> Iterator[list[str]]:
    """`VERB table` of each statement sent to the job store from now on (transaction control
    aside: PostgreSQL's driver begins transactions itself, SQLite's engine sends BEGIN)."""
    with session_factory.begin() as session:
        engine = session.get_bind()
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split()
        marker = {"INSERT": "INTO", "UPDATE": "UPDATE", "SELECT": "FROM", "DELETE": "FROM"}
        verb = words[0].upper()
        if verb in marker:
            upper = [word.upper() for word in words]
            sent.append(f"{verb} {words[upper.index(marker[verb]) + 1]}")

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def make_integration(api: ApiHarness, headers: dict[str, str], vendor: str = "SANDBOX") -> str:
    body = {
        "name": f"{vendor} statements",
        "integration_vendor": vendor,
        "active": True,
        "base_url": "http://127.0.0.1:9/t/x",
        "credentials": {"api_key": "s3cr3t-api-key-7f1d"},
    }
    response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["id"])


def write(
    api: ApiHarness, headers: dict[str, str], integration_id: str, **fields: Any
) -> tuple[int, dict[str, Any]]:
    body = {"integration_id": integration_id, "last_name": "Lovelace", **fields}
    response = api.client.post("/v1/residents/", json=body, headers=headers)
    return response.status_code, response.json()


def jobs_of(api: ApiHarness, integration_id: str) -> int:
    with api.session_factory() as session:
        stmt = select(func.count()).select_from(Job).where(Job.integration_id == integration_id)
        return int(session.scalar(stmt) or 0)


def change_elsewhere(api: ApiHarness, integration_id: str, **values: Any) -> None:
    """Change the integration as another API process would: straight in the job store."""
    with api.session_factory.begin() as session:
        session.execute(
            update(Integration).where(Integration.id == integration_id).values(**values)
        )


def cache_resident(api: ApiHarness, integration_id: str, pms_id: str) -> str:
    """A resident in the integration's record cache, as a sync leaves it; its pmsq id."""
    with api.session_factory.begin() as session:
        record = Record(integration_id=integration_id, model="residents", pms_id=pms_id, data={})
        session.add(record)
        session.flush()
        return record.id


def test_a_write_is_one_insert_once_its_token_and_integration_are_known(
    api: ApiHarness, statements: list[str], submitter: RecordingSubmitter
) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers)
    statements.clear()
    first = write(api, headers, integration_id)
    assert first[0] == 200, first
    assert statements == ["SELECT integrations", "INSERT jobs"]
    statements.clear()
    status, answer = write(api, headers, integration_id, first_name="Ada")
    assert status == 200, answer
    assert statements == ["INSERT jobs"]
    assert answer["data"] == {"last_name": "Lovelace", "first_name": "Ada"}
    assert submitter.submitted[-1] == (integration_id, [answer["job_id"]])
    with api.session_factory() as session:
        job = session.get(Job, answer["job_id"])
        assert job is not None
        stored = {c.key: getattr(job, c.key) for c in Job.__table__.columns}
    # Every column as an ORM `Job` built by hand would have it.
    assert stored.pop("idempotency_key")
    assert stored.pop("due_at") == stored.pop("created_at") == stored.pop("updated_at")
    assert stored == {
        "id": answer["job_id"],
        "root_job_id": answer["job_id"],
        "parent_job_id": None,
        "retry_of_job_id": None,
        "account_id": job.account_id,
        "integration_id": integration_id,
        "model": "residents",
        "action": "CREATE",
        "target_id": None,
        "payload": {"last_name": "Lovelace", "first_name": "Ada"},
        "status": "PENDING",
        "attempts": 0,
        "deliveries": 0,
        "unrecorded_claims": 0,
        "lease_expires_at": None,
        "outcome_unknown": False,
        "error": None,
        "created_record_id": None,
        "finish_seq": None,
        "started_at": None,
        "finished_at": None,
        "tree_total": 1,
        "tree_finished": 0,
        "tree_succeeded": 0,
        "tree_failed": 0,
        "tree_created_record_id": None,
        "tree_finished_at": None,
    }


def test_a_write_with_a_key_adds_the_keys_lookup_and_insert(
    api: ApiHarness, statements: list[str]
) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers)
    assert write(api, headers, integration_id)[0] == 200
    statements.clear()
    body = {"integration_id": integration_id, "last_name": "Hopper"}
    keyed = {**headers, "Idempotency-Key": "statements-1"}
    response = api.client.post("/v1/residents/", json=body, headers=keyed)
    assert response.status_code == 200, response.text
    assert statements == [
        "SELECT idempotency_records",
        "INSERT jobs",
        "INSERT idempotency_records",
    ]
    statements.clear()
    replayed = api.client.post("/v1/residents/", json=body, headers=keyed)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == response.json()
    assert statements == ["SELECT idempotency_records"]


def test_on_postgresql_a_write_without_a_key_is_sent_outside_a_transaction_block(
    api: ApiHarness, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    """One round trip (no BEGIN before the INSERT, no COMMIT after it); a keyed write's three
    statements still share one transaction."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite takes its write lock up front with BEGIN IMMEDIATE")
    headers = api.token("acme")
    integration_id = make_integration(api, headers)
    assert write(api, headers, integration_id)[0] == 200  # the integration is now known
    with session_factory.begin() as session:
        engine = session.get_bind()
    after: list[tuple[str, str]] = []

    def note(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        status = cursor.connection.info.transaction_status.name
        after.append((statement.split()[0], status))

    event.listen(engine, "after_cursor_execute", note)
    try:
        assert write(api, headers, integration_id)[0] == 200
        keyed = {**headers, "Idempotency-Key": "one-round-trip"}
        body = {"integration_id": integration_id, "last_name": "Hopper"}
        assert api.client.post("/v1/residents/", json=body, headers=keyed).status_code == 200
    finally:
        event.remove(engine, "after_cursor_execute", note)
    # The keyless write's INSERT jobs, then the keyed one's SELECT and two INSERTs.
    assert after == [
        ("INSERT", "IDLE"),
        ("SELECT", "INTRANS"),
        ("INSERT", "INTRANS"),
        ("INSERT", "INTRANS"),
    ]


def test_an_update_of_a_cached_record_reads_the_record_with_its_integration(
    api: ApiHarness, statements: list[str]
) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers)
    record_id = cache_resident(api, integration_id, "pms-7")
    statements.clear()
    response = api.client.put(
        f"/v1/residents/{record_id}", json={"last_name": "Byron"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert statements == ["SELECT records", "INSERT jobs"]
    with api.session_factory() as session:
        job = session.get(Job, response.json()["job_id"])
        assert job is not None
        assert (job.integration_id, job.action, job.target_id) == (
            integration_id,
            "UPDATE",
            "pms-7",
        )


@pytest.mark.parametrize("change", [{"active": False}, {"is_archived": True}])
def test_an_update_of_a_cached_record_of_an_inactive_integration_is_refused(
    api: ApiHarness, change: dict[str, Any]
) -> None:
    """As a write naming the integration is: an inactive or archived integration takes no
    write, whichever way the write found it."""
    headers = api.token("acme")
    integration_id = make_integration(api, headers)
    record_id = cache_resident(api, integration_id, "pms-7")
    change_elsewhere(api, integration_id, **change)
    for target in (record_id, "pms-7"):  # pmsq's id of the record, and the PMS's
        response = api.client.put(
            f"/v1/residents/{target}", json={"last_name": "Byron"}, headers=headers
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"]["fields"] == [
            {"field": "integration_id", "reason": "integration is inactive or archived"}
        ]
    assert jobs_of(api, integration_id) == 0


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"active": False}, 400, "integration is inactive or archived"),
        ({"is_archived": True}, 400, "integration is inactive or archived"),
        ({"deleted_at": utcnow()}, 404, "unknown integration"),
    ],
    ids=["disabled", "archived", "deleted"],
)
def test_an_integration_changed_elsewhere_a_moment_ago_takes_no_write(
    api: ApiHarness, change: dict[str, Any], status: int, reason: str
) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers)
    assert write(api, headers, integration_id)[0] == 200  # remembered from here on
    change_elsewhere(api, integration_id, **change)
    refused_status, refused = write(api, headers, integration_id)
    assert refused_status == status, refused
    assert refused["error"]["details"]["fields"] == [{"field": "integration_id", "reason": reason}]
    assert jobs_of(api, integration_id) == 1


def test_a_vendor_changed_elsewhere_judges_the_next_write(api: ApiHarness) -> None:
    """SANDBOX takes a resident's `notes`, RENT_MANAGER does not."""
    headers = api.token("acme")
    sandbox = make_integration(api, headers, "SANDBOX")
    assert write(api, headers, sandbox, notes="vip")[0] == 200
    change_elsewhere(api, sandbox, integration_vendor="RENT_MANAGER")
    status, refused = write(api, headers, sandbox, notes="vip")
    assert status == 400, refused
    assert refused["error"]["details"]["fields"] == [
        {"field": "notes", "reason": "unknown field for this PMS"}
    ]
    rent_manager = make_integration(api, headers, "RENT_MANAGER")
    assert write(api, headers, rent_manager)[0] == 200
    change_elsewhere(api, rent_manager, integration_vendor="SANDBOX")
    status, accepted = write(api, headers, rent_manager, notes="vip")
    assert status == 200, accepted
    assert accepted["data"] == {"last_name": "Lovelace", "notes": "vip"}


def test_new_properties_disabled_elsewhere_refuse_the_next_write_for_one(
    api: ApiHarness,
) -> None:
    headers = api.token("acme")
    integration_id = make_integration(api, headers)
    assert write(api, headers, integration_id, property_id="p-1")[0] == 200
    change_elsewhere(api, integration_id, new_properties_are_enabled=False)
    status, refused = write(api, headers, integration_id, property_id="p-1")
    assert status == 400, refused
    assert refused["error"]["details"]["fields"] == [
        {"field": "property_id", "reason": "property disabled for this integration"}
    ]
    assert jobs_of(api, integration_id) == 1


def test_a_write_whose_integration_changes_at_every_judgement_is_409_after_a_few(
    api: ApiHarness, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands in for another request changing the integration between each read and INSERT."""
    headers = api.token("acme")
    integration_id = make_integration(api, headers)
    assert write(api, headers, integration_id)[0] == 200
    unchanged_params = WriteTarget.unchanged_params

    def changed_since(target: WriteTarget) -> dict[str, Any]:
        return {**unchanged_params(target), "target_vendor": "changed since"}

    monkeypatch.setattr(WriteTarget, "unchanged_params", changed_since)
    statements.clear()
    status, refused = write(api, headers, integration_id)
    assert status == 409, refused
    assert refused["error"]["details"]["fields"] == [
        {"field": "integration_id", "reason": "changed while the write was accepted"}
    ]
    assert statements.count("INSERT jobs") == MAX_JUDGEMENTS
    assert statements.count("SELECT integrations") == MAX_JUDGEMENTS - 1
    assert jobs_of(api, integration_id) == 1

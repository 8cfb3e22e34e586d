"""The sync runner on SQLite with a scripted PMS: counts, resuming at the uncommitted page after
a retryable error, and fencing of a run that lost its job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.errors import FencedOut, PmsError
from pmsq.models.account import Account
from pmsq.models.enums import JobStatus, Vendor
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.normalization import EnumMapping
from pmsq.models.property import PropertyConfiguration
from pmsq.models.record import Record
from pmsq.models.sync import DataDiff, SyncExecution, SyncStatus, SyncType
from pmsq.models.webhook import WebhookDelivery, WebhookEndpoint, WebhookEvent
from pmsq.pms.connector import Exchange
from pmsq.workers.record_cache import store, store_written
from pmsq.workers.sync_runner import SyncLease, SyncRunner
from pmsq.workers.sync_starter import build_sync

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _no_log(exchange: Exchange) -> None:
    return None


class ScriptedPms:
    """Pages per model; `fail_once` pages answer a retryable error the first time asked."""

    def __init__(
        self, pages: dict[str, list[list[dict[str, Any]]]], fail_once: set[tuple[str, int]]
    ) -> None:
        self.pages = pages
        self.fail_once = set(fail_once)
        self.asked: list[tuple[str, int]] = []

    def list_page(
        self, model: str, page: int, page_size: int, log: Any
    ) -> tuple[list[dict[str, Any]], bool]:
        self.asked.append((model, page))
        if (model, page) in self.fail_once:
            self.fail_once.discard((model, page))
            raise PmsError("PMS answered 503: busy", retryable=True, status_code=503)
        if model not in self.pages:
            raise PmsError("PMS answered 403: no access to this model", retryable=False)
        batches = self.pages[model]
        return batches[page - 1], page < len(batches)

    def execute(self, step: Any, log: Any) -> Any:
        raise AssertionError("a sync never writes")


def _residents(*ids: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "first_name": f"N{i}"} for i in ids]


PAGES = {
    "residents": [_residents(1, 2), _residents(3, 4), _residents(5)],
    "units": [[{"id": "u1"}, {"name": "no id"}]],
}


class World:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        with session_factory.begin() as session:
            account = Account(name="acme")
            session.add(account)
            session.flush()
            integration = Integration(
                account_id=account.id, name="pms", integration_vendor=Vendor.SANDBOX.value
            )
            session.add(integration)
            session.flush()
            execution, job = build_sync(
                integration, SyncType.MANUAL, T0, models=["residents", "units"]
            )
            assert job is not None
            job.status = JobStatus.RUNNING.value
            job.deliveries = 1
            # A record the PMS no longer has, and one it still has, unchanged.
            session.add_all(
                [
                    execution,
                    job,
                    Record(integration_id=integration.id, model="residents", pms_id="gone"),
                    Record(
                        integration_id=integration.id,
                        model="residents",
                        pms_id="r1",
                        data={"id": "r1", "first_name": "N1"},
                    ),
                ]
            )
            self.integration_id, self.execution_id, self.job_id = (
                integration.id,
                execution.id,
                job.id,
            )

    def another_sync(self) -> tuple[str, str]:
        """A second manual sync of the same integration: (execution id, job id)."""
        with self.session_factory.begin() as session:
            integration = session.get(Integration, self.integration_id)
            assert integration is not None
            execution, job = build_sync(
                integration, SyncType.MANUAL, T0, models=["residents", "units"]
            )
            assert job is not None
            job.status = JobStatus.RUNNING.value
            job.deliveries = 1
            session.add_all([execution, job])
            return execution.id, job.id

    def run(
        self,
        pms: ScriptedPms,
        delivery: int = 1,
        sync: tuple[str, str] | None = None,
        now: datetime = T0,
    ) -> SyncExecution:
        execution_id, job_id = sync or (self.execution_id, self.job_id)
        runner = SyncRunner(self.session_factory, lambda: now)
        lease = SyncLease(job_id, delivery)
        return runner.run(execution_id, self.integration_id, lease, pms, _no_log)

    def execution(self) -> SyncExecution:
        with self.session_factory() as session:
            execution = session.get(SyncExecution, self.execution_id)
            assert execution is not None
            return execution

    def cached_ids(self) -> set[str]:
        with self.session_factory() as session:
            return set(session.scalars(select(Record.pms_id)).all())

    def diffs(self) -> list[tuple[str, str]]:
        with self.session_factory() as session:
            rows = session.execute(select(DataDiff.diff_type, DataDiff.pms_id)).all()
            return sorted((kind, pms_id) for kind, pms_id in rows)


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> World:
    return World(session_factory)


EXPECTED_COUNTS = {"insert": 5, "update": 0, "delete": 1, "error": 0, "warnings": 1, "total": 7}


def test_counts_cache_and_diffs_of_a_clean_run(world: World) -> None:
    execution = world.run(ScriptedPms(PAGES, set()))
    assert execution.status == SyncStatus.SUCCESS.value
    assert execution.counts() == EXPECTED_COUNTS
    assert world.cached_ids() == {"r1", "r2", "r3", "r4", "r5", "u1"}
    assert ("DELETE", "gone") in world.diffs()


def test_a_retried_sync_resumes_at_the_page_it_had_not_committed(world: World) -> None:
    """The runner before this change read every model again from page 1 on a retry."""
    pms = ScriptedPms(PAGES, {("residents", 3)})
    with pytest.raises(PmsError):
        world.run(pms)
    assert world.execution().status == SyncStatus.RUNNING.value
    assert world.execution().total_count == 4, "pages 1 and 2 are committed"

    pms.asked.clear()
    execution = world.run(pms)

    assert pms.asked == [("residents", 3), ("units", 1)]
    assert execution.status == SyncStatus.SUCCESS.value
    assert world.execution().counts() == EXPECTED_COUNTS
    assert world.cached_ids() == {"r1", "r2", "r3", "r4", "r5", "u1"}
    assert [d for d in world.diffs() if d[0] == "DELETE"] == [("DELETE", "gone")]


def test_a_refused_model_is_an_error_and_the_others_sync(world: World) -> None:
    execution = world.run(ScriptedPms({"units": PAGES["units"]}, set()))
    assert execution.status == SyncStatus.FAILURE.value
    assert execution.error_count == 1
    assert execution.errors == ["residents: PMS answered 403: no access to this model"]
    assert "gone" in world.cached_ids(), "an unread model deletes nothing"


def test_a_run_that_lost_its_job_writes_nothing(world: World) -> None:
    """Before this change a stale run overwrote the counts and ended the execution again."""
    pms = ScriptedPms(PAGES, {("residents", 2)})
    with pytest.raises(PmsError):
        world.run(pms)
    with world.session_factory.begin() as session:
        job = session.get(Job, world.job_id)
        assert job is not None
        job.deliveries = 2  # the job was reclaimed and claimed again elsewhere
    before = world.execution().counts()

    with pytest.raises(FencedOut):
        world.run(pms, delivery=1)

    assert world.execution().counts() == before
    assert world.execution().status == SyncStatus.RUNNING.value
    assert pms.asked[-1] == ("residents", 2), "it asked the PMS nothing more"


def test_overlapping_syncs_never_take_each_others_records_for_gone(world: World) -> None:
    """Found in review: with one 'seen by' execution per record, a sync resumed after another
    one had read the model deleted the records of its own earlier pages."""
    first = ScriptedPms(PAGES, {("residents", 3)})
    with pytest.raises(PmsError):
        world.run(first)
    second = world.another_sync()
    assert world.run(ScriptedPms(PAGES, set()), sync=second).status == SyncStatus.SUCCESS.value

    resumed = world.run(first)

    assert resumed.status == SyncStatus.SUCCESS.value
    assert resumed.delete_count == 0, "the other sync already removed what was gone"
    assert world.cached_ids() == {"r1", "r2", "r3", "r4", "r5", "u1"}
    assert [d for d in world.diffs() if d[0] == "DELETE"] == [("DELETE", "gone")]


@pytest.mark.parametrize("write", [store, store_written], ids=["store", "store_written"])
def test_a_record_written_during_a_sync_is_not_taken_for_gone(
    world: World, write: Callable[..., object]
) -> None:
    pms = ScriptedPms(PAGES, {("residents", 3)})
    with pytest.raises(PmsError):
        world.run(pms)
    with world.session_factory.begin() as session:
        write(session, world.integration_id, "residents", {"id": "r9", "first_name": "New"}, T0)

    world.run(pms)

    assert "r9" in world.cached_ids()


def test_a_sync_delivered_again_after_it_ended_changes_nothing(world: World) -> None:
    """Found in review: the re-run set the ended execution RUNNING and ended it again (a
    second SYNC_COMPLETE)."""
    ended = world.run(ScriptedPms(PAGES, set()))
    pms = ScriptedPms(PAGES, set())

    again = world.run(pms, now=T0 + timedelta(minutes=1))

    assert pms.asked == []
    assert (again.status, again.completed_at, again.counts()) == (
        ended.status, ended.completed_at, ended.counts(),
    )  # fmt: skip


def test_records_of_a_disabled_property_are_not_ingested(world: World) -> None:
    """A property disabled through its configuration (or, never configured, by
    `new_properties_are_enabled: false`) gets no new or updated records; its cached ones stay
    as they were and are not taken for gone. Before this change the sync cached them all."""
    with world.session_factory.begin() as session:
        integration = session.get(Integration, world.integration_id)
        assert integration is not None
        integration.new_properties_are_enabled = False
        session.add_all(
            [
                PropertyConfiguration(
                    integration_id=world.integration_id, property_id="p-on", enabled=True
                ),
                PropertyConfiguration(
                    integration_id=world.integration_id, property_id="p-off", enabled=False
                ),
                Record(
                    integration_id=world.integration_id,
                    model="residents",
                    pms_id="r-kept",
                    data={"id": "r-kept", "property_id": "p-off", "first_name": "Old"},
                ),
            ]
        )
    residents = [
        {"id": "r-on", "property_id": "p-on"},
        {"id": "r-off", "property_id": "p-off"},
        {"id": "r-kept", "property_id": "p-off", "first_name": "New"},
        {"id": "r-unconfigured", "property_id": "p-new"},
        {"id": "r-no-property"},
    ]
    pages = {"residents": [residents], "properties": [[{"id": "p-off"}, {"id": "p-new"}]]}
    with world.session_factory.begin() as session:
        execution = session.get(SyncExecution, world.execution_id)
        assert execution is not None
        execution.models = ["properties", "residents"]

    execution = world.run(ScriptedPms(pages, set()))

    assert execution.status == SyncStatus.SUCCESS.value
    assert world.cached_ids() == {"p-off", "p-new", "r-on", "r-kept", "r-no-property"}
    with world.session_factory() as session:
        kept = session.scalars(select(Record).where(Record.pms_id == "r-kept")).one()
        assert kept.data["first_name"] == "Old"
    assert ("UPDATE", "r-kept") not in world.diffs()
    assert ("DELETE", "r-kept") not in world.diffs()
    assert (execution.insert_count, execution.update_count, execution.total_count) == (4, 0, 7)


# -- DATA_NEW, DATA_UPDATE, FIRST_SYNC_COMPLETE --------------------------------------------

SYNC_EVENTS = [
    WebhookEvent.DATA_NEW,
    WebhookEvent.DATA_UPDATE,
    WebhookEvent.SYNC_COMPLETE,
    WebhookEvent.FIRST_SYNC_COMPLETE,
]
CHANGED = {
    "residents": [[{"id": "r1", "first_name": "Ada", "property_id": "p-1"}, {"id": "r2"}]],
    "units": [[{"id": "u1"}]],
}


def _endpoint(world: World, events: list[WebhookEvent], model: str | None = None) -> str:
    with world.session_factory.begin() as session:
        integration = session.get(Integration, world.integration_id)
        assert integration is not None
        endpoint = WebhookEndpoint(
            account_id=integration.account_id,
            url="http://hooks.invalid/h",
            events=[e.value for e in events],
            secret_encrypted=b"unused",
            model=model,
        )
        session.add(endpoint)
        session.flush()
        return endpoint.id


def _ended_sync_before(world: World) -> None:
    with world.session_factory.begin() as session:
        session.add(
            SyncExecution(
                integration_id=world.integration_id,
                type=SyncType.SCHEDULED.value,
                status=SyncStatus.SUCCESS.value,
                completed_at=T0 - timedelta(hours=1),
            )
        )


def _deliveries(world: World) -> list[WebhookDelivery]:
    with world.session_factory() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event)))


def test_a_sync_sends_data_new_and_data_update_per_record_to_who_listens(world: World) -> None:
    """Before this change DATA_NEW and DATA_UPDATE were refused at registration, never sent."""
    _ended_sync_before(world)
    residents = _endpoint(world, SYNC_EVENTS, model="residents")
    units = _endpoint(world, [WebhookEvent.DATA_NEW], model="units")

    world.run(ScriptedPms(CHANGED, set()))

    sent = [
        (d.endpoint_id, d.event, d.payload["data"]["object"], d.payload["data"]["x_id"])
        for d in _deliveries(world)
        if d.event.startswith("DATA_")
    ]
    assert sorted(sent) == sorted(
        [
            (residents, "DATA_NEW", "residents", "r2"),
            (residents, "DATA_UPDATE", "residents", "r1"),
            (units, "DATA_NEW", "units", "u1"),
        ]
    )
    (update,) = [d for d in _deliveries(world) if d.event == "DATA_UPDATE"]
    data = update.payload["data"]
    assert data["diff"] == {
        "previous": {"first_name": "N1", "property_id": None},
        "new": {"first_name": "Ada", "property_id": "p-1"},
    }
    assert data["context"] == {"property_id": "p-1"}
    assert (data["integration_id"], data["job_id"], data["vendor"]) == (
        world.integration_id, world.job_id, "SANDBOX",
    )  # fmt: skip
    with world.session_factory() as session:
        cached = session.scalars(select(Record).where(Record.pms_id == "r1")).one()
        assert data["record_id"] == cached.id
    (new_unit,) = [d for d in _deliveries(world) if d.endpoint_id == units]
    assert new_unit.payload["data"]["payload"] == {"id": "u1"}
    completions = [d.event for d in _deliveries(world) if d.event.endswith("SYNC_COMPLETE")]
    assert completions == ["SYNC_COMPLETE"]


def test_the_first_sync_sends_first_sync_complete_and_no_data_events(world: World) -> None:
    """Before this change the first sync sent SYNC_COMPLETE (FIRST_SYNC_COMPLETE was refused)."""
    _endpoint(world, SYNC_EVENTS)

    world.run(ScriptedPms(CHANGED, set()))

    assert [d.event for d in _deliveries(world)] == ["FIRST_SYNC_COMPLETE"]
    # The next sync is not the first any more: it sends SYNC_COMPLETE and its changes.
    second = world.another_sync()
    world.run(ScriptedPms({"residents": [[{"id": "r9"}]], "units": [[]]}, set()), sync=second)
    assert sorted(d.event for d in _deliveries(world)) == [
        "DATA_NEW", "FIRST_SYNC_COMPLETE", "SYNC_COMPLETE",
    ]  # fmt: skip


def test_a_backsync_sends_no_data_events(world: World) -> None:
    _ended_sync_before(world)
    _endpoint(world, [WebhookEvent.DATA_NEW, WebhookEvent.DATA_UPDATE])
    with world.session_factory.begin() as session:
        execution = session.get(SyncExecution, world.execution_id)
        assert execution is not None
        execution.type = SyncType.BACKSYNC.value

    world.run(ScriptedPms(CHANGED, set()))

    assert _deliveries(world) == []


# -- custom enum mappings ------------------------------------------------------------------


def _lease_mapping(world: World) -> None:
    with world.session_factory.begin() as session:
        session.add(
            EnumMapping(
                integration_id=world.integration_id,
                model="leases",
                field="status",
                mappings={"current": "ACTIVE", "notice": "ACTIVE", "past": "INACTIVE"},
                default_value="OTHER",
            )
        )


def _cached(world: World, pms_id: str) -> dict[str, Any]:
    with world.session_factory() as session:
        return dict(session.scalars(select(Record).where(Record.pms_id == pms_id)).one().data)


def test_a_sync_caches_enum_fields_normalized_by_the_integrations_mapping(world: World) -> None:
    """Before this change the cache held the vendor's values only."""
    _lease_mapping(world)
    leases = [{"id": "l1", "status": "current"}, {"id": "l2", "status": "odd"}, {"id": "l3"}]
    with world.session_factory.begin() as session:
        execution = session.get(SyncExecution, world.execution_id)
        assert execution is not None
        execution.models = ["leases"]

    world.run(ScriptedPms({"leases": [leases]}, set()))

    assert _cached(world, "l1") == {
        "id": "l1", "status": "current", "status_raw": "current", "status_normalized": "ACTIVE",
    }  # fmt: skip
    assert _cached(world, "l2")["status_normalized"] == "OTHER", "unmapped: the default"
    assert _cached(world, "l3") == {"id": "l3"}, "no status, nothing added"


def test_a_written_record_is_cached_normalized_too(world: World) -> None:
    _lease_mapping(world)
    with world.session_factory.begin() as session:
        store(session, world.integration_id, "leases", {"id": "l9", "status": "past"}, T0)
        # A vendor without default mappings: every value is OTHER until the integration maps it.
        store(session, world.integration_id, "applicants", {"id": "a1", "status": "New"}, T0)
    assert _cached(world, "l9")["status_normalized"] == "INACTIVE"
    assert _cached(world, "a1") == {
        "id": "a1", "status": "New", "status_raw": "New", "status_normalized": "OTHER",
    }  # fmt: skip

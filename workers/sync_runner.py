"""Running one sync: read the chosen models from the PMS page by page into the record cache.

Counts: insert (new in the PMS), update (changed), delete (gone from the PMS), error (a model
that could not be read), warnings (records without an id, or read twice), total (records
read). Each page commits on its own with its records, its counts and the execution's cursor, so
a sync retried after a retryable PMS error (5xx, timeout, 429) or a lost worker resumes at the
page it had not committed, not at page 1. A model is known whole only once its last page is
read: then its cached records that neither this sync nor anything after its start saw are gone
from the PMS and deleted. Each sync takes a generation when it first starts (one more than its
integration's newest); every record it reads, and every record a write caches, is stamped with
the newest generation that saw it, so syncs of one integration that overlap never take each
other's records (or a record written meanwhile) for gone. A model the PMS refuses outright is
counted as an error and the others still sync. Enum fields are cached normalized
(`models.normalization`: the vendor's value stays, `{field}_raw` and `{field}_normalized` join it).

Records of a property the integration has disabled (its property configuration, or
`new_properties_are_enabled` for one never configured) are not ingested: a new one is not
cached, a cached one keeps its data (no NEW or UPDATE diff), yet is marked seen, since the
PMS still has it and it must not be taken for gone. The properties themselves still sync, so
they can be listed and enabled.

Every commit is fenced: it applies only while the sync's job is still RUNNING under the
delivery that runs it, so a worker that lost its job (paused past its lease) changes nothing
and cannot end the execution twice; a run of an execution that has already ended (its job was
delivered again after the end was committed) changes nothing either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pmsq.errors import FencedOut, PmsError
from pmsq.models.base import new_id, utcnow
from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.normalization import normalized
from pmsq.models.property import PROPERTIES_MODEL, disabled_properties
from pmsq.models.record import Record
from pmsq.models.sync import UNFINISHED_SYNC, DataDiff, SyncExecution, SyncStatus
from pmsq.pms.connector import Connector, ExchangeLog
from pmsq.workers.record_cache import (
    current_generation,
    enum_mappings,
    field_changes,
    record_key,
)
from pmsq.workers.webhooks.events import RecordChange, on_records_changed, on_sync_finished

#: Records asked for per page.
PAGE_SIZE = 100
#: Data diffs are kept this long.
DIFF_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class SyncLease:
    """Which run of the sync's job may write: its job and the delivery number it claimed."""

    job_id: str
    delivery: int


@dataclass(frozen=True)
class Cursor:
    """Where the sync stands: the index of the model being read and its next page."""

    model: int = 0
    page: int = 1

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> Cursor:
        raw = raw or {}
        return cls(int(raw.get("model", 0)), int(raw.get("page", 1)))

    def as_json(self) -> dict[str, int]:
        return {"model": self.model, "page": self.page}


class SyncRunner:
    def __init__(
        self, session_factory: sessionmaker[Session], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock

    def run(
        self,
        execution_id: str,
        integration_id: str,
        lease: SyncLease,
        connector: Connector,
        log: ExchangeLog,
    ) -> SyncExecution:
        """Read every model still to read and end the execution; returns it, ended."""
        models, cursor = self._start(execution_id, lease)
        for index in range(cursor.model, len(models)):
            page = cursor.page if index == cursor.model else 1
            self._read_model(execution_id, integration_id, lease, connector, log,
                             models, index, page)  # fmt: skip
        return self._finish(execution_id, integration_id, lease)

    def _read_model(
        self,
        execution_id: str,
        integration_id: str,
        lease: SyncLease,
        connector: Connector,
        log: ExchangeLog,
        models: Sequence[str],
        index: int,
        page: int,
    ) -> None:
        model = models[index]
        more = True
        while more:
            try:
                batch, more = connector.list_page(model, page, PAGE_SIZE, log)
            except PmsError as error:
                if error.retryable:
                    raise  # the job is retried and resumes at this very page
                self._model_refused(execution_id, lease, model, index, error)
                return
            following = Cursor(index, page + 1) if more else Cursor(index + 1, 1)
            self._apply_page(execution_id, integration_id, lease, model, batch, following,
                             last=not more)  # fmt: skip
            page += 1

    def _start(self, execution_id: str, lease: SyncLease) -> tuple[list[str], Cursor]:
        now = self._clock()
        with self._session_factory.begin() as session:
            execution = self._fenced(session, execution_id, lease)
            models = [str(m) for m in execution.models]
            if execution.status not in UNFINISHED_SYNC:
                return models, Cursor(len(models), 1)  # ended already: nothing left to read
            execution.status = SyncStatus.RUNNING.value
            execution.started_at = execution.started_at or now
            if execution.generation is None:
                execution.generation = _next_generation(session, execution.integration_id)
            return models, Cursor.of(execution.cursor)

    def _fenced(self, session: Session, execution_id: str, lease: SyncLease) -> SyncExecution:
        """The execution, once this run is proven to still hold the sync's job (row lock)."""
        job = session.scalars(
            select(Job).where(Job.id == lease.job_id).with_for_update()
        ).one_or_none()
        if job is None or job.status != JobStatus.RUNNING.value or job.deliveries != lease.delivery:
            raise FencedOut(f"sync job {lease.job_id} is no longer held by this run")
        execution = session.get(SyncExecution, execution_id)
        if execution is None:
            raise PmsError(f"sync execution {execution_id} does not exist", retryable=False)
        return execution

    def _apply_page(
        self,
        execution_id: str,
        integration_id: str,
        lease: SyncLease,
        model: str,
        batch: list[dict[str, Any]],
        following: Cursor,
        *,
        last: bool,
    ) -> None:
        now = self._clock()
        with self._session_factory.begin() as session:
            execution = self._fenced(session, execution_id, lease)
            generation = execution.generation
            skipped = self._disabled(session, integration_id, model, batch)
            mappings = enum_mappings(session, integration_id, model)
            batch = [normalized(data, mappings) for data in batch]
            new: list[RecordChange] = []
            updated: list[RecordChange] = []
            ids = [key for key in map(record_key, batch) if key is not None]
            known = {
                row.pms_id: row
                for row in session.scalars(
                    select(Record).where(
                        Record.integration_id == integration_id,
                        Record.model == model,
                        Record.pms_id.in_(ids),
                    )
                )
            }
            for data in batch:
                execution.total_count += 1
                pms_id = record_key(data)
                row = known.get(pms_id) if pms_id is not None else None
                if pms_id is None or (row is not None and row.seen_generation == generation):
                    execution.warning_count += 1
                    continue
                if _property_of(data) in skipped:
                    if row is not None:
                        row.seen_generation = max(row.seen_generation or 0, generation or 0)
                    continue
                if row is None:
                    row = Record(id=new_id(), integration_id=integration_id, model=model,
                                 pms_id=pms_id, data=dict(data))  # fmt: skip
                    session.add(row)
                    known[pms_id] = row
                    execution.insert_count += 1
                    session.add(_diff(execution, model, pms_id, "NEW", {}, now))
                    new.append(RecordChange(row.id, pms_id, dict(data), {}))
                elif changes := field_changes(row.data, data):
                    row.data = dict(data)
                    execution.update_count += 1
                    session.add(_diff(execution, model, pms_id, "UPDATE", changes, now))
                    updated.append(RecordChange(row.id, pms_id, dict(data), changes))
                row.synced_at = now
                row.seen_generation = max(row.seen_generation or 0, generation or 0)
            on_records_changed(session, execution, model, new, updated, now)  # DATA_NEW/_UPDATE
            if last:
                self._delete_unseen(session, execution, model, now)
            execution.cursor = following.as_json()
            try:
                session.flush()
            except IntegrityError:
                # An overlapping sync (or a write) cached one of these records first: the page
                # is read again on the retry and updates that row instead.
                raise PmsError(
                    "a record of this page was cached concurrently", retryable=True
                ) from None

    @staticmethod
    def _disabled(
        session: Session, integration_id: str, model: str, batch: list[dict[str, Any]]
    ) -> set[str]:
        """The properties named by `batch` whose records are not ingested (none for the
        properties model itself)."""
        if model == PROPERTIES_MODEL:
            return set()
        named = {p for p in map(_property_of, batch) if p is not None}
        if not named:
            return set()
        integration = session.get(Integration, integration_id)
        if integration is None:
            return set()
        return disabled_properties(
            session, integration_id, integration.new_properties_are_enabled, named
        )

    @staticmethod
    def _delete_unseen(
        session: Session, execution: SyncExecution, model: str, now: datetime
    ) -> None:
        """The model was read whole: what this execution did not see is gone from the PMS."""
        gone = session.scalars(
            select(Record).where(
                Record.integration_id == execution.integration_id,
                Record.model == model,
                (Record.seen_generation < execution.generation) | Record.seen_generation.is_(None),
            )
        ).all()
        for row in gone:
            session.delete(row)
            execution.delete_count += 1
            session.add(_diff(execution, model, row.pms_id, "DELETE", {}, now))

    def _model_refused(
        self, execution_id: str, lease: SyncLease, model: str, index: int, error: PmsError
    ) -> None:
        with self._session_factory.begin() as session:
            execution = self._fenced(session, execution_id, lease)
            execution.error_count += 1
            execution.errors = [*execution.errors, f"{model}: {error.message}"]
            execution.cursor = Cursor(index + 1, 1).as_json()

    def _finish(self, execution_id: str, integration_id: str, lease: SyncLease) -> SyncExecution:
        now = self._clock()
        with self._session_factory.begin() as session:
            execution = self._fenced(session, execution_id, lease)
            if execution.status != SyncStatus.RUNNING.value:
                return execution  # ended already (SYNC_COMPLETE is sent once)
            failed = execution.error_count > 0
            execution.status = (SyncStatus.FAILURE if failed else SyncStatus.SUCCESS).value
            execution.completed_at = now
            on_sync_finished(session, execution, now)  # outbox: (FIRST_)SYNC_COMPLETE
            session.execute(
                delete(DataDiff).where(
                    DataDiff.integration_id == integration_id,
                    DataDiff.created_at < now - DIFF_RETENTION,
                )
            )
            return execution


def _property_of(data: dict[str, Any]) -> str | None:
    value = data.get("property_id")
    return None if value is None or value == "" else str(value)


def _next_generation(session: Session, integration_id: str) -> int:
    """One more than the integration's newest generation, under its row lock (PostgreSQL;
    SQLite runs one writer at a time), so two syncs starting at once never share one."""
    session.execute(
        select(Integration.id).where(Integration.id == integration_id).with_for_update()
    )
    return (current_generation(session, integration_id) or 0) + 1


def _diff(
    execution: SyncExecution, model: str, pms_id: str, kind: str, changes: dict[str, Any],
    now: datetime,
) -> DataDiff:  # fmt: skip
    return DataDiff(
        integration_id=execution.integration_id,
        execution_id=execution.id,
        model=model,
        pms_id=pms_id,
        diff_type=kind,
        changes=changes,
        created_at=now,
    )


def mark_failed(session: Session, execution_id: str, error: str, now: datetime) -> None:
    """The sync's job gave up: its execution ends FAILURE with the job's error."""
    execution = session.get(SyncExecution, execution_id)
    if execution is None or execution.status not in (
        SyncStatus.PENDING.value,
        SyncStatus.RUNNING.value,
    ):
        return
    execution.status = SyncStatus.FAILURE.value
    execution.errors = [*execution.errors, error]
    execution.error_count += 1
    execution.completed_at = now
    on_sync_finished(session, execution, now)  # outbox: (FIRST_)SYNC_COMPLETE

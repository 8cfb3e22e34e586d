"""Running one sync: read the chosen models from the PMS page by page into the record cache.

Counts follow seed 002: insert (new in the PMS), update (changed), delete (gone from the PMS),
error (a model that could not be read), warnings (records without an id), total (records read).
A retryable PMS error (5xx, timeout, 429) propagates so the sync job is retried whole; a model
the PMS refuses outright is counted as an error and the others still sync.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.sync import DataDiff, SyncExecution, SyncStatus
from pms.connector import Connector, ExchangeLog
from pmsq.errors import PmsError
from scheduler.cache import cached, record_key, store
from workers.webhooks.events import on_sync_finished

#: Records asked for per page.
PAGE_SIZE = 100
#: Data diffs are kept this long.
DIFF_RETENTION = timedelta(days=30)


@dataclass
class Counts:
    insert: int = 0
    update: int = 0
    delete: int = 0
    error: int = 0
    warnings: int = 0
    total: int = 0
    errors: list[str] = field(default_factory=list)


class SyncRunner:
    def __init__(
        self, session_factory: sessionmaker[Session], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock

    def run(
        self, execution_id: str, integration_id: str, connector: Connector, log: ExchangeLog
    ) -> Counts:
        models = self._start(execution_id)
        counts = Counts()
        for model in models:
            try:
                records = self._read_all(connector, model, log)
            except PmsError as error:
                if error.retryable:
                    raise
                counts.error += 1
                counts.errors.append(f"{model}: {error.message}")
                continue
            self._apply(execution_id, integration_id, model, records, counts)
        self._finish(execution_id, integration_id, counts)
        return counts

    def _start(self, execution_id: str) -> list[str]:
        now = self._clock()
        with self._session_factory.begin() as session:
            execution = session.get(SyncExecution, execution_id)
            if execution is None:
                raise PmsError(f"sync execution {execution_id} does not exist", retryable=False)
            execution.status = SyncStatus.RUNNING.value
            execution.started_at = execution.started_at or now
            return [str(m) for m in execution.models]

    @staticmethod
    def _read_all(connector: Connector, model: str, log: ExchangeLog) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        page, more = 1, True
        while more:
            batch, more = connector.list_page(model, page, PAGE_SIZE, log)
            records.extend(batch)
            page += 1
        return records

    def _apply(
        self,
        execution_id: str,
        integration_id: str,
        model: str,
        records: list[dict[str, Any]],
        counts: Counts,
    ) -> None:
        now = self._clock()
        with self._session_factory.begin() as session:
            known = cached(session, integration_id, model)
            seen: set[str] = set()
            for data in records:
                counts.total += 1
                pms_id = record_key(data)
                if pms_id is None or pms_id in seen:
                    counts.warnings += 1
                    continue
                seen.add(pms_id)
                change = store(
                    session, integration_id, model, data, now, known.get(pms_id), lookup=False
                )
                if change.kind is None:
                    continue
                counts.insert += change.kind == "NEW"
                counts.update += change.kind == "UPDATE"
                session.add(self._diff(execution_id, integration_id, model, pms_id, change.kind,
                                       change.changes, now))  # fmt: skip
            for pms_id, row in known.items():
                if pms_id not in seen:
                    session.delete(row)
                    counts.delete += 1
                    session.add(
                        self._diff(execution_id, integration_id, model, pms_id, "DELETE", {}, now)
                    )

    @staticmethod
    def _diff(
        execution_id: str,
        integration_id: str,
        model: str,
        pms_id: str,
        kind: str,
        changes: dict[str, Any],
        now: datetime,
    ) -> DataDiff:
        return DataDiff(
            integration_id=integration_id,
            execution_id=execution_id,
            model=model,
            pms_id=pms_id,
            diff_type=kind,
            changes=changes,
            created_at=now,
        )

    def _finish(self, execution_id: str, integration_id: str, counts: Counts) -> None:
        now = self._clock()
        with self._session_factory.begin() as session:
            execution = session.get(SyncExecution, execution_id)
            assert execution is not None
            execution.insert_count = counts.insert
            execution.update_count = counts.update
            execution.delete_count = counts.delete
            execution.error_count = counts.error
            execution.warning_count = counts.warnings
            execution.total_count = counts.total
            execution.errors = counts.errors
            execution.status = (SyncStatus.FAILURE if counts.error else SyncStatus.SUCCESS).value
            execution.completed_at = now
            on_sync_finished(session, execution, now)  # outbox: SYNC_COMPLETE
            session.execute(
                delete(DataDiff).where(
                    DataDiff.integration_id == integration_id,
                    DataDiff.created_at < now - DIFF_RETENTION,
                )
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
    on_sync_finished(session, execution, now)  # outbox: SYNC_COMPLETE

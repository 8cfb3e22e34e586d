"""The record cache reads are served from: the PMS's version of each record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pmsq.models.base import new_id
from pmsq.models.direct import DirectStatement
from pmsq.models.integration import Integration
from pmsq.models.normalization import (
    FIELDS_BY_MODEL,
    FieldMapping,
    field_mappings,
    normalized,
)
from pmsq.models.record import Record
from pmsq.models.sync import SyncExecution
from pmsq.workers.copies import VersionedCopies

_RECORDS = cast(Table, Record.__table__)
_EXECUTIONS = cast(Table, SyncExecution.__table__)


@dataclass(frozen=True)
class Change:
    """What storing one PMS record did to the cache."""

    #: NEW, UPDATE, or None when the cached copy was already identical.
    kind: str | None
    changes: dict[str, Any]


def record_key(data: Mapping[str, Any]) -> str | None:
    value = data.get("id")
    return None if value is None else str(value)


def current_generation(session: Session, integration_id: str) -> int | None:
    """The newest sync generation of the integration (None before its first sync started)."""
    value: int | None = session.scalar(
        select(func.max(SyncExecution.generation)).where(
            SyncExecution.integration_id == integration_id
        )
    )
    return value


def store(
    session: Session, integration_id: str, model: str, data: Mapping[str, Any], now: datetime
) -> Change:
    """Insert or update the cached copy of one PMS record pmsq wrote (which must carry an "id").

    The record is stamped with the integration's newest sync generation, so a sync that was
    already reading its model when the write landed does not take it for gone.
    """
    pms_id = record_key(data)
    if pms_id is None:
        raise ValueError("a PMS record without an id cannot be cached")
    data = normalized(data, enum_mappings(session, integration_id, model))
    generation = current_generation(session, integration_id)
    existing = session.scalars(
        select(Record).where(
            Record.integration_id == integration_id,
            Record.model == model,
            Record.pms_id == pms_id,
        )
    ).one_or_none()
    if existing is None:
        session.add(
            Record(
                integration_id=integration_id,
                model=model,
                pms_id=pms_id,
                data=dict(data),
                synced_at=now,
                seen_generation=generation,
            )
        )
        return Change("NEW", {})
    existing.synced_at = now
    existing.seen_generation = _newest(existing.seen_generation, generation)
    changes = field_changes(existing.data, data)
    if not changes:
        return Change(None, {})
    existing.data = dict(data)
    return Change("UPDATE", changes)


def enum_mappings(session: Session, integration_id: str, model: str) -> dict[str, FieldMapping]:
    """The mappings the cache normalizes `model`'s enum fields with, for syncs and writes
    alike (none, and no query, for a model without enum fields)."""
    if model not in FIELDS_BY_MODEL:
        return {}
    integration = session.get(Integration, integration_id)
    if integration is None:
        return {}
    return field_mappings(session, integration_id, integration.integration_vendor, model)


class EnumMappingCache:
    """This process's copies of integrations' enum mappings, each with the integration's
    version (`updated_at`) they were read at.

    A custom mapping's every change moves its integration's `updated_at` in the same
    transaction (`pmsq.models.normalization`), and a vendor's defaults never change, so a
    caller that read the integration's version in its transaction gets from `get` exactly the
    mappings it would have read there: from the copy while the version is the same, read again
    (later than the version, so never older than it) when it moved. At most `MAX_COPIES`
    integrations are kept, the oldest loaded dropped first.
    """

    def __init__(self) -> None:
        self._copies: VersionedCopies[str, dict[str, dict[str, FieldMapping]]] = VersionedCopies()

    def get(
        self, session: Session, integration_id: str, version: datetime | None, model: str
    ) -> dict[str, FieldMapping]:
        """`enum_mappings` of `model` as of `version` (none, and no query, for a model without
        enum fields)."""
        if model not in FIELDS_BY_MODEL:
            return {}
        by_model = self._copies.get(integration_id, version)
        if by_model is None:
            by_model = {}
            if version is not None:
                self._copies.keep(integration_id, version, by_model)
        mappings = by_model.get(model)
        if mappings is None:
            with session.no_autoflush:  # the caller's changes go out once, at its commit
                mappings = by_model[model] = enum_mappings(session, integration_id, model)
        return mappings


def store_written(
    session: Session,
    integration_id: str,
    model: str,
    data: Mapping[str, Any],
    now: datetime,
    mappings: Mapping[str, FieldMapping] | None = None,
) -> None:
    """`store` for the write path, in one statement: an upsert that stamps the integration's
    newest sync generation (read in the same statement) and only ever moves a record's
    generation forward. It says nothing of what changed, which only a sync reports. Enum fields
    are normalized as `store` does them, with `mappings` (`EnumMappingCache`) if given, else
    with those read now (one more read, only for a model that has some)."""
    if record_key(data) is None:
        raise ValueError("a PMS record without an id cannot be cached")
    if mappings is None:
        with session.no_autoflush:  # the job's outcome goes out once, at commit
            mappings = enum_mappings(session, integration_id, model)
    # On the session's connection: a core statement through the session would first flush
    # the caller's pending changes (the job's outcome) as a statement of their own.
    write_record(session.connection(), integration_id, model, data, now, mappings)


def write_record(
    connection: Connection,
    integration_id: str,
    model: str,
    data: Mapping[str, Any],
    now: datetime,
    mappings: Mapping[str, FieldMapping],
) -> None:
    """`store_written`'s upsert on a plain connection, normalized with `mappings`."""
    pms_id = record_key(data)
    if pms_id is None:
        raise ValueError("a PMS record without an id cannot be cached")
    params = {
        "id": new_id(),
        "integration_id": integration_id,
        "model": model,
        "pms_id": pms_id,
        "data": dict(normalized(data, mappings)),
        "synced_at": now,
    }
    _upsert(connection.dialect.name).execute(connection, params)


@cache
def _upsert(dialect_name: str) -> DirectStatement:
    """The upsert of `store_written` for a backend, built once (its values are parameters)
    and run directly on the caller's connection (`DirectStatement`): every recorded write
    runs it."""
    return DirectStatement(_upsert_statement(dialect_name))


def _upsert_statement(dialect_name: str) -> postgresql.Insert | sqlite.Insert:
    row: dict[str, Any] = {name: bindparam(name) for name in _STORED_COLUMNS}
    row["seen_generation"] = (
        select(func.max(_EXECUTIONS.c.generation))
        .where(_EXECUTIONS.c.integration_id == bindparam("integration_id"))
        .scalar_subquery()
    )
    key = [_RECORDS.c.integration_id, _RECORDS.c.model, _RECORDS.c.pms_id]
    if dialect_name == "postgresql":
        pg = postgresql.insert(_RECORDS).values(row)
        return pg.on_conflict_do_update(index_elements=key, set_=_merged(pg.excluded))
    lite = sqlite.insert(_RECORDS).values(row)
    return lite.on_conflict_do_update(index_elements=key, set_=_merged(lite.excluded))


#: Columns `store_written` passes as parameters (the generation is read by the statement).
_STORED_COLUMNS = ("id", "integration_id", "model", "pms_id", "data", "synced_at")


def _merged(excluded: Any) -> dict[str, Any]:
    """What an upsert's conflicting row takes from the new one (`excluded`): its data, its
    sync time and, as `_newest`, the newer generation (NULL > n is not true, so a NULL never
    replaces a generation)."""
    current, seen = _RECORDS.c.seen_generation, excluded.seen_generation
    return {
        "data": excluded.data,
        "synced_at": excluded.synced_at,
        "seen_generation": case((current.is_(None) | (seen > current), seen), else_=current),
    }


def _newest(current: int | None, seen: int | None) -> int | None:
    """A record's generation only moves forward (an older sync must not hide a newer one's)."""
    if current is None or seen is None:
        return seen if current is None else current
    return max(current, seen)


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"old": old.get(name), "new": new.get(name)}
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }

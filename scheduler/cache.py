"""The record cache reads are served from: the PMS's version of each record (seed 001)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.record import Record


@dataclass(frozen=True)
class Change:
    """What storing one PMS record did to the cache."""

    #: NEW, UPDATE, or None when the cached copy was already identical.
    kind: str | None
    changes: dict[str, Any]


def record_key(data: Mapping[str, Any]) -> str | None:
    value = data.get("id")
    return None if value is None else str(value)


def cached(session: Session, integration_id: str, model: str) -> dict[str, Record]:
    rows = session.scalars(
        select(Record).where(Record.integration_id == integration_id, Record.model == model)
    ).all()
    return {row.pms_id: row for row in rows}


def store(
    session: Session,
    integration_id: str,
    model: str,
    data: Mapping[str, Any],
    now: datetime,
    existing: Record | None = None,
    *,
    lookup: bool = True,
) -> Change:
    """Insert or update the cached copy of one PMS record (which must carry an "id")."""
    pms_id = record_key(data)
    if pms_id is None:
        raise ValueError("a PMS record without an id cannot be cached")
    if existing is None and lookup:
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
            )
        )
        return Change("NEW", {})
    changes = field_changes(existing.data, data)
    existing.synced_at = now
    if not changes:
        return Change(None, {})
    existing.data = dict(data)
    return Change("UPDATE", changes)


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"old": old.get(name), "new": new.get(name)}
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }

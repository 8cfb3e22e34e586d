"""The integration as accepting a write sees it, and the per-process memory of it.

Accepting a write reads six facts of its integration: whose it is, whether it is live (not
deleted), active and not archived, its vendor (which decides the payload's fields and the
first step) and whether properties it has not configured are written for. An API process
keeps what it read (`WriteTargets`) so that a write needs no read of the integration at all:
the root job's INSERT takes its integration from the `integrations` table under `UNCHANGED`,
which holds only while the row still has every one of those facts as remembered. A write
judged on facts that changed since (the integration disabled, deleted or given another
vendor a moment ago, by any process) inserts nothing; the facts are then read again and the
write judged on them, so a remembered integration is never one the database would refuse.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, and_, bindparam, or_, select

from pmsq.errors import NotFound, ValidationFailed
from pmsq.models.integration import Integration
from pmsq.models.record import Record

#: Most integrations one process remembers; past it the memory starts over (a bound on
#: memory: a forgotten integration costs its next write one read).
WRITE_TARGETS_MAX = 10_000

_integrations = cast(Table, Integration.__table__)
_records = cast(Table, Record.__table__)


@dataclass(frozen=True)
class WriteTarget:
    """The facts of one integration a write is judged on (see the module's docstring)."""

    integration_id: str
    account_id: str
    vendor: str
    new_properties_are_enabled: bool
    active: bool
    is_archived: bool

    def check_writable(self) -> None:
        """Refuses (400 naming `integration_id`) a write through an inactive or archived
        integration."""
        if not self.active or self.is_archived:
            raise ValidationFailed(
                f"integration '{self.integration_id}' is not active",
                [{"field": "integration_id", "reason": "integration is inactive or archived"}],
            )

    def unchanged_params(self) -> dict[str, Any]:
        """The values `UNCHANGED` compares the integration's row with."""
        return {
            "target_integration_id": self.integration_id,
            "target_account_id": self.account_id,
            "target_vendor": self.vendor,
            "target_new_properties_are_enabled": self.new_properties_are_enabled,
            "target_active": self.active,
            "target_is_archived": self.is_archived,
        }


#: True for the integration's row while it is live and has every fact of the `WriteTarget`
#: whose `unchanged_params` are bound.
UNCHANGED: ColumnElement[bool] = and_(
    _integrations.c.id == bindparam("target_integration_id"),
    _integrations.c.account_id == bindparam("target_account_id"),
    _integrations.c.integration_vendor == bindparam("target_vendor"),
    _integrations.c.new_properties_are_enabled == bindparam("target_new_properties_are_enabled"),
    _integrations.c.active == bindparam("target_active"),
    _integrations.c.is_archived == bindparam("target_is_archived"),
    _integrations.c.deleted_at.is_(None),
)

_FACTS = (
    _integrations.c.id,
    _integrations.c.account_id,
    _integrations.c.integration_vendor,
    _integrations.c.new_properties_are_enabled,
    _integrations.c.active,
    _integrations.c.is_archived,
)
_READ = select(*_FACTS, _integrations.c.deleted_at).where(
    _integrations.c.id == bindparam("integration_id")
)
#: The newest cached record of the account's live integrations whose pmsq id or PMS id is
#: `record_id`, with its integration's facts.
_CACHED_RECORD = (
    select(_records.c.pms_id, *_FACTS)
    .join(_integrations, _integrations.c.id == _records.c.integration_id)
    .where(
        or_(_records.c.id == bindparam("record_id"), _records.c.pms_id == bindparam("record_id")),
        _records.c.model == bindparam("model"),
        _integrations.c.account_id == bindparam("account_id"),
        _integrations.c.deleted_at.is_(None),
    )
    .order_by(_records.c.synced_at.desc())
    .limit(1)
)


def read_owned(connection: Connection, account_id: str, integration_id: str) -> WriteTarget:
    """The account's live integration as it is now, or NotFound (another account's looks
    just as absent), as `owned_integration` judges it."""
    row = connection.execute(_READ, {"integration_id": integration_id}).first()
    if row is None or row.account_id != account_id or row.deleted_at is not None:
        raise NotFound(
            f"no integration with id '{integration_id}'",
            [{"field": "integration_id", "reason": "unknown integration"}],
        )
    return _target(row)


def read_cached_record(
    connection: Connection, account_id: str, model: str, record_id: str
) -> tuple[WriteTarget, str] | None:
    """The integration and PMS id of the record `record_id` (pmsq's id or the PMS's) of
    `model` in the record cache of the account's live integrations, newest first; None when
    no such record is cached."""
    row = connection.execute(
        _CACHED_RECORD, {"record_id": record_id, "model": model, "account_id": account_id}
    ).first()
    if row is None:
        return None
    return _target(row), row.pms_id


def _target(row: Any) -> WriteTarget:
    return WriteTarget(
        integration_id=row.id,
        account_id=row.account_id,
        vendor=row.integration_vendor,
        new_properties_are_enabled=row.new_properties_are_enabled,
        active=row.active,
        is_archived=row.is_archived,
    )


class WriteTargets:
    """The integrations this process has read for writes, by id. Safe to share between the
    API's threads. What it answers may be out of date: only a write whose INSERT holds
    `UNCHANGED` may rely on it."""

    def __init__(self, max_entries: int = WRITE_TARGETS_MAX) -> None:
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._targets: dict[str, WriteTarget] = {}

    def get(self, account_id: str, integration_id: str) -> WriteTarget | None:
        """The remembered integration if it was `account_id`'s when read, else None."""
        target = self._targets.get(integration_id)
        if target is None or target.account_id != account_id:
            return None
        return target

    def remember(self, target: WriteTarget) -> None:
        with self._lock:
            if len(self._targets) >= self._max_entries:
                self._targets.clear()
            self._targets[target.integration_id] = target

    def forget(self, integration_id: str) -> None:
        with self._lock:
            self._targets.pop(integration_id, None)

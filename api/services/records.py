"""Reads: `GET /v1/{model}/` and `GET /v1/{model}/{id}`, served from the record cache."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.pagination import PageRequest, paginate
from pmsq.errors import NotFound
from pmsq.models.base import iso_z
from pmsq.models.integration import Integration
from pmsq.models.record import Record
from pmsq.pms.registry import KNOWN_MODELS

SORTABLE = {"synced_at": Record.synced_at, "record_id": Record.pms_id}


def record_view(record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        "record_id": record.pms_id,
        "integration_id": record.integration_id,
        "synced_at": iso_z(record.synced_at),
        "data": record.data,
    }


class RecordService:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    def list(
        self, account_id: str, model: str, page: PageRequest, integration_id: str | None
    ) -> dict[str, Any]:
        _known(model)
        stmt = self._owned(account_id).where(Record.model == model)
        if integration_id is not None:
            stmt = stmt.where(Record.integration_id == integration_id)
        with self._session_factory() as session:
            return paginate(session, stmt, page, SORTABLE, "synced_at:desc", record_view)

    def get(self, account_id: str, model: str, record_id: str) -> dict[str, Any]:
        """By pmsq's record id or the PMS's own id (as `created_record_id` reports it)."""
        _known(model)
        stmt = self._owned(account_id).where(
            Record.model == model, or_(Record.id == record_id, Record.pms_id == record_id)
        )
        with self._session_factory() as session:
            record = session.scalars(stmt.order_by(Record.synced_at.desc()).limit(1)).first()
            if record is None:
                raise NotFound(f"no {model} record with id '{record_id}'")
            return {"result": record_view(record)}

    @staticmethod
    def _owned(account_id: str) -> Any:
        return (
            select(Record)
            .join(Integration, Integration.id == Record.integration_id)
            .where(Integration.account_id == account_id, Integration.deleted_at.is_(None))
        )


def _known(model: str) -> None:
    if model not in KNOWN_MODELS:
        raise NotFound(f"unknown model '{model}'", [{"field": "model", "reason": "unknown model"}])

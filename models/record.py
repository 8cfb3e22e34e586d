"""The cache of PMS records that reads are served from (seed 001, "Source of Truth")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, new_id, utcnow


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("integration_id", "model", "pms_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"), index=True)
    model: Mapped[str] = mapped_column(String(60))
    pms_id: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The sync execution that last read this record from the PMS: at the end of a model, its
    #: records another execution (or none) last read are gone from the PMS. Not a foreign key,
    #: so purging old executions never touches the cache.
    seen_by_execution_id: Mapped[str | None] = mapped_column(String(36), default=None)

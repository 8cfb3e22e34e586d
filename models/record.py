"""The cache of PMS records that reads are served from: the PMS is the source of truth."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pmsq.models.base import Base, new_id, utcnow


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("integration_id", "model", "pms_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"), index=True)
    model: Mapped[str] = mapped_column(String(60))
    pms_id: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The newest sync generation (`SyncExecution.generation`) in which the record was known
    #: to exist at the PMS: read by that sync, or written by pmsq while it ran. A sync that
    #: read a model whole deletes the model's records of older generations: gone from the PMS.
    seen_generation: Mapped[int | None] = mapped_column(Integer, default=None)

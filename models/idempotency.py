"""Client Idempotency-Key records: the first answer to a write, replayed for repeats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pmsq.models.base import Base, new_id, utcnow


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(255))
    #: SHA-256 of method, path and body: a repeat with another body is refused.
    request_sha256: Mapped[str] = mapped_column(String(64))
    #: The stored answer; None only on a key an earlier version reserved before answering.
    response_status: Mapped[int | None] = mapped_column(Integer, default=None)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    #: Indexed: retention purges records past their TTL, oldest first.
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

"""A customer's connection to one PMS, with its limits and sync cadence."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, LargeBinary, String, true
from sqlalchemy.orm import Mapped, mapped_column

from pmsq.models.base import Base, new_id, utcnow


class Integration(Base):
    __tablename__ = "integrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    integration_vendor: Mapped[str] = mapped_column(String(40))
    #: Fernet token of the JSON credentials; never returned, never logged.
    credentials_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    base_url: Mapped[str | None] = mapped_column(String(500), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    new_properties_are_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_frequency: Mapped[int] = mapped_column(Integer, default=12)
    sync_cadence: Mapped[str] = mapped_column(String(10), default="HOUR")
    max_request_frequency: Mapped[float] = mapped_column(Float, default=1.0)
    max_request_cadence: Mapped[str] = mapped_column(String(10), default="SECOND")
    max_job_concurrency: Mapped[int] = mapped_column(Integer, default=1)
    custom_sync_schedule: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    use_custom_sync_schedule: Mapped[bool] = mapped_column(Boolean, default=False)
    #: `System`: production or the PMS's sandbox; a label for the client, pmsq calls base_url.
    system: Mapped[str] = mapped_column(
        String(10), default="PRODUCTION", server_default="PRODUCTION"
    )
    #: When false, a manual sync is refused (409); scheduled syncs and backsyncs still run.
    allow_manual_syncs: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    #: The integration this one was created from (its credentials were copied if none given).
    based_on_integration_id: Mapped[str | None] = mapped_column(String(36), default=None)
    #: Set by DELETE: the integration is gone for the API, its jobs stay as history.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

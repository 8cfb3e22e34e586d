"""Webhooks: the endpoints an account registers, and the outbox of deliveries to them.

A `WebhookDelivery` row is written in the same transaction as the state change that causes its
event (the outbox pattern), so an event is never lost and never sent for a rolled-back change.
Workers send due PENDING deliveries and record every attempt in `WebhookAttempt` (the delivery
log the API serves).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pmsq.models.base import Base, new_id, utcnow


class WebhookEvent(StrEnum):
    """Events an endpoint may subscribe to (Propexo's names, plus WRITE_OPERATION_SUCCESS)."""

    #: A write's job tree finished with FAILURE or PARTIAL_SUCCESS.
    WRITE_OPERATION_FAILURE = "WRITE_OPERATION_FAILURE"
    #: A write's job tree finished with every job succeeded (Propexo has no such event).
    WRITE_OPERATION_SUCCESS = "WRITE_OPERATION_SUCCESS"
    #: One job (of a write or a sync) failed for good.
    JOB_FAILURE = "JOB_FAILURE"
    #: A sync execution ended (SUCCESS or FAILURE).
    SYNC_COMPLETE = "SYNC_COMPLETE"


class DeliveryStatus(StrEnum):
    #: Waiting for its (next) attempt at `next_attempt_at`.
    PENDING = "PENDING"
    #: The endpoint answered 2xx.
    SUCCESS = "SUCCESS"
    #: Every attempt failed (PMSQ_WEBHOOK_MAX_ATTEMPTS), or the endpoint was deleted.
    FAILURE = "FAILURE"


#: Statuses a delivery never leaves.
TERMINAL_DELIVERY = frozenset({DeliveryStatus.SUCCESS, DeliveryStatus.FAILURE})


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: Subscribed `WebhookEvent` names.
    events: Mapped[list[Any]] = mapped_column(default=list)
    #: Fernet token of `{"secret": ...}`, the HMAC key; returned once at creation, never logged.
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Set by DELETE: no new deliveries, pending ones fail; the delivery log stays as history.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: the outbox row and its delivery state."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event: Mapped[str] = mapped_column(String(40))
    #: The JSON body sent, fixed when the event happened.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(10), default=DeliveryStatus.PENDING.value)
    #: Attempts started; also the fencing token of a claim (an attempt records its outcome
    #: only while the row still carries its number).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: When a PENDING delivery is next due; a claim pushes it a lease ahead, so a sender that
    #: died mid-attempt is retried after the lease.
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    #: Indexed: retention purges finished deliveries, oldest first.
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookAttempt(Base):
    """One POST of a delivery and what came back: the delivery log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- what crosses the HTTP boundary ------------------------------------------------------------

_HTTP_URL = re.compile(r"^https?://[^\s/]+\S*$")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, examples=["https://example.com/hooks/pmsq"])
    events: list[str] = Field(examples=[["WRITE_OPERATION_FAILURE", "JOB_FAILURE"]])

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not _HTTP_URL.match(value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("subscribe to at least one event")
        known = {e.value for e in WebhookEvent}
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(
                f"unknown event(s) {', '.join(unknown)}; use {', '.join(sorted(known))}"
            )
        return list(dict.fromkeys(value))


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="HMAC-SHA256 key of X-Pmsq-Signature; shown in this response only"
    )


class WebhookEnvelope(BaseModel):
    result: WebhookOut


class WebhookCreatedEnvelope(BaseModel):
    result: WebhookCreated

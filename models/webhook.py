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
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    Boolean,
    Connection,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    event,
    update,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from pmsq.models.account import Account
from pmsq.models.base import Base, new_id, utcnow


class WebhookEvent(StrEnum):
    """Events an endpoint may subscribe to (Propexo's names, plus WRITE_OPERATION_SUCCESS)."""

    #: A write's job tree finished with FAILURE or PARTIAL_SUCCESS.
    WRITE_OPERATION_FAILURE = "WRITE_OPERATION_FAILURE"
    #: A write's job tree finished with every job succeeded (Propexo has no such event).
    WRITE_OPERATION_SUCCESS = "WRITE_OPERATION_SUCCESS"
    #: One job (of a write or a sync) failed for good.
    JOB_FAILURE = "JOB_FAILURE"
    #: One job (of a write or a sync) succeeded.
    JOB_SUCCESS = "JOB_SUCCESS"
    #: A sync execution ended (SUCCESS or FAILURE), other than the integration's first.
    SYNC_COMPLETE = "SYNC_COMPLETE"
    #: The integration's first sync execution ended (instead of SYNC_COMPLETE).
    FIRST_SYNC_COMPLETE = "FIRST_SYNC_COMPLETE"
    #: A sync cached a record it had not seen (not sent by first syncs and backsyncs).
    DATA_NEW = "DATA_NEW"
    #: A sync found a cached record changed (not sent by first syncs and backsyncs).
    DATA_UPDATE = "DATA_UPDATE"


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
    #: `[{"header", "value"}]` sent with every delivery (the client's own, e.g. a token).
    headers: Mapped[list[Any] | None] = mapped_column(default=None)
    #: Only events about this model (e.g. "residents") are sent; all when null.
    model: Mapped[str | None] = mapped_column(String(60), default=None)
    #: Set by DELETE: no new deliveries, pending ones fail; the delivery log stays as history.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(default=utcnow, onupdate=utcnow)


_ACCOUNTS = cast(Table, Account.__table__)


def _move_webhooks_version(_mapper: Mapper[Any], connection: Connection, endpoint: Any) -> None:
    """Every insert, update or delete of an endpoint moves its account's `webhooks_version` in
    the flush that writes it, so no transaction can change an account's endpoints and leave
    the version a worker keeps them by where it was."""
    accounts = _ACCOUNTS.c
    connection.execute(
        update(_ACCOUNTS)
        .where(accounts.id == endpoint.account_id)
        .values(webhooks_version=accounts.webhooks_version + 1)
    )


for _change in ("after_insert", "after_update", "after_delete"):
    event.listen(WebhookEndpoint, _change, _move_webhooks_version)


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


# -- Propexo's webhooks (`/v1/webhooks/`) ------------------------------------------------------

#: Headers a client may not set on its deliveries: pmsq's own and what HTTP needs right.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "user-agent", "propexo-signature"}
)


class WebhookHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    header: str = Field(min_length=1, max_length=200, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
    value: str = Field(max_length=2000, pattern=r"^[^\r\n]*$")

    @field_validator("header")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_HEADERS or value.lower().startswith("x-pmsq-"):
            raise ValueError(f"'{value}' is set by pmsq")
        return value


def _known_triggers(value: list[str]) -> list[str]:
    return WebhookCreate._known_events(value)


class PropexoWebhookFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    headers: list[WebhookHeader] | None = Field(default=None, max_length=50)
    active: bool | None = None
    secret: str | None = Field(
        default=None,
        min_length=10,
        max_length=200,
        description="HMAC-SHA256 key of propexo-signature and X-Pmsq-Signature",
    )
    triggers: list[str] | None = None
    model: str | None = Field(default=None, max_length=60, pattern=r"^[a-z_]+$")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _HTTP_URL.match(value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("triggers")
    @classmethod
    def _triggers(cls, value: list[str] | None) -> list[str] | None:
        return _known_triggers(value) if value is not None else None


class PropexoWebhookCreate(PropexoWebhookFields):
    url: str = Field(max_length=2000, examples=["https://example.com/hooks/pmsq"])
    triggers: list[str] = Field(examples=[["WRITE_OPERATION_FAILURE", "JOB_FAILURE"]])
    #: Propexo's default: a new webhook is inactive until activated.
    active: bool = False


class PropexoWebhookUpdate(PropexoWebhookFields):
    pass


class WebhookTrigger(BaseModel):
    id: str
    trigger: str
    model: str | None


class PropexoWebhookOut(BaseModel):
    id: str
    created_at: datetime
    updated_at: datetime
    url: str
    headers: list[WebhookHeader]
    active: bool
    secret: str = Field(description="The signing key, as Propexo returns it")
    system: Literal["PRODUCTION", "SANDBOX"]
    triggers: list[WebhookTrigger]


class PropexoWebhookEnvelope(BaseModel):
    result: PropexoWebhookOut


class WebhookDeleted(BaseModel):
    id: str


class WebhookDeletedEnvelope(BaseModel):
    result: WebhookDeleted


class WebhookAttemptOut(BaseModel):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    created_at: str | None


class WebhookDeliveryOut(BaseModel):
    id: str
    webhook_id: str
    event: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str | None
    delivered_at: str | None
    payload: dict[str, Any]
    attempt_log: list[WebhookAttemptOut]

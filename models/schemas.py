"""Pydantic v2 schemas of what crosses the HTTP boundary."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pmsq.errors import ValidationFailed
from pmsq.models.enums import CADENCE_SECONDS, Cadence, Vendor, WriteStatus

WEEKDAYS = ("SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
#: Slowest request rate an integration may be given: one request per minute.
MIN_REQUESTS_PER_S = 1 / 60
#: Largest frequency accepted (sync_frequency, max_request_frequency): far beyond any real
#: cadence, small enough for every column and every date computation.
MAX_FREQUENCY = 1_000_000


class Slot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(examples=["09:00"])
    end: str = Field(examples=["17:00"], description='"24:00" ends a slot at midnight')
    sync_frequency: int = Field(ge=1, le=MAX_FREQUENCY)
    sync_cadence: Cadence

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str, info: Any) -> str:
        if not (HHMM.match(value) or (info.field_name == "end" and value == "24:00")):
            raise ValueError('must be a time "HH:MM" (00:00-23:59; end may be 24:00)')
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Slot:
        if self.end <= self.start:
            raise ValueError(f"slot end {self.end} must be after its start {self.start}")
        return self


class DaySchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slots: list[Slot] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_overlap(self) -> DaySchedule:
        ordered = sorted(self.slots, key=lambda s: s.start)
        for before, after in itertools.pairwise(ordered):
            if after.start < before.end:
                raise ValueError(
                    f"slots {before.start}-{before.end} and {after.start}-{after.end} overlap"
                )
        return self


class CustomSyncSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["WEEK_BASED"] = "WEEK_BASED"
    timezone: str = Field(examples=["America/New_York"])
    interval: dict[str, DaySchedule] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not an IANA time zone") from None
        return value

    @field_validator("interval")
    @classmethod
    def _weekdays(cls, value: dict[str, DaySchedule]) -> dict[str, DaySchedule]:
        unknown = sorted(set(value) - set(WEEKDAYS))
        if unknown:
            raise ValueError(f"unknown weekday(s) {', '.join(unknown)}; use {', '.join(WEEKDAYS)}")
        return value


class IntegrationFields(BaseModel):
    """Fields shared by create and update; all optional so PUT can be partial."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    credentials: dict[str, Any] | None = Field(
        default=None, description="Write-only: stored encrypted, never returned"
    )
    base_url: str | None = Field(
        default=None, max_length=500, examples=["http://127.0.0.1:8001/t/acme"]
    )
    active: bool | None = None
    is_archived: bool | None = None
    new_properties_are_enabled: bool | None = None
    sync_frequency: int | None = Field(default=None, ge=1, le=MAX_FREQUENCY)
    sync_cadence: Cadence | None = None
    max_request_frequency: float | None = Field(default=None, ge=1, le=MAX_FREQUENCY)
    max_request_cadence: Cadence | None = None
    max_job_concurrency: int | None = Field(default=None, ge=1, le=100)
    custom_sync_schedule: CustomSyncSchedule | None = None
    use_custom_sync_schedule: bool | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return value


class IntegrationCreate(IntegrationFields):
    #: One of the installed vendors (`GET /v1/admin/capabilities` lists them): a string checked
    #: by the integration service, since packages may add vendors.
    integration_vendor: str = Field(max_length=40, examples=[Vendor.BUILDIUM.value])
    name: str = Field(min_length=1, max_length=200)
    sync_frequency: int = Field(default=12, ge=1, le=MAX_FREQUENCY)
    sync_cadence: Cadence = Cadence.HOUR
    max_request_frequency: float = Field(default=1, ge=1, le=MAX_FREQUENCY)
    max_request_cadence: Cadence = Cadence.SECOND
    max_job_concurrency: int = Field(default=1, ge=1, le=100)

    @model_validator(mode="after")
    def _rate_floor(self) -> IntegrationCreate:
        try:
            check_rate(self.max_request_frequency, self.max_request_cadence)
        except ValueError as exc:
            # Raised as pmsq's own error so the answer names the field, not the whole body.
            raise ValidationFailed(
                str(exc), [{"field": "max_request_frequency", "reason": str(exc)}]
            ) from None
        return self


class IntegrationUpdate(IntegrationFields):
    integration_vendor: str | None = Field(default=None, max_length=40)


def check_rate(frequency: float, cadence: Cadence) -> None:
    """Refuses a request rate below one per minute."""
    if frequency / CADENCE_SECONDS[cadence] < MIN_REQUESTS_PER_S - 1e-12:
        raise ValueError(
            f"max_request_frequency {frequency:g} per {cadence.value} is below the minimum "
            "rate of one request per minute"
        )


class IntegrationOut(BaseModel):
    id: str
    name: str
    integration_vendor: str
    base_url: str | None
    active: bool
    is_archived: bool
    new_properties_are_enabled: bool
    sync_frequency: int
    sync_cadence: str
    max_request_frequency: float
    max_request_cadence: str
    max_job_concurrency: int
    custom_sync_schedule: dict[str, Any] | None
    use_custom_sync_schedule: bool
    has_credentials: bool
    created_at: datetime
    updated_at: datetime


class IntegrationEnvelope(BaseModel):
    result: IntegrationOut


class WriteAccepted(BaseModel):
    job_id: str = Field(description="The root job id; poll GET /v1/admin/write-status/{job_id}")
    data: dict[str, Any] = Field(description="The payload as it will be sent to the PMS")


class RetryAccepted(BaseModel):
    success: bool
    job_id: str = Field(description="The root job id of the new write that re-runs what failed")


class WriteStatusOut(BaseModel):
    write_status: WriteStatus
    errors: list[str]
    created_record_id: str | None


class ErrorDetail(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorBody

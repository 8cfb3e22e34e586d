"""Pydantic v2 schemas of what crosses the HTTP boundary."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pmsq.errors import ValidationFailed
from pmsq.models.enums import (
    CADENCE_SECONDS,
    WIRE_VENDOR_NAMES,
    Cadence,
    System,
    WriteStatus,
    vendor_from_wire,
)

T = TypeVar("T")

WEEKDAYS = ("SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
#: Slowest request rate an integration may be given: one request per minute.
MIN_REQUESTS_PER_S = 1 / 60
#: Largest frequency accepted (sync_frequency, max_request_frequency): far beyond any real
#: cadence, small enough for every column and every date computation.
MAX_FREQUENCY = 1_000_000


#: A vendor in a request: Propexo's spelling (`RENTMANAGER`) or pmsq's (`RENT_MANAGER`).
VendorIn = Annotated[
    str,
    BeforeValidator(vendor_from_wire),
    Field(max_length=40),
    WithJsonSchema({"type": "string", "enum": list(WIRE_VENDOR_NAMES)}),
]
#: A vendor in an answer, spelled as Propexo spells it.
VendorOut = Annotated[str, WithJsonSchema({"type": "string", "enum": list(WIRE_VENDOR_NAMES)})]


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
    system: System | None = None
    allow_manual_syncs: bool | None = Field(
        default=None, description="When false, a manual sync is refused (409)"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return value


class IntegrationCreate(IntegrationFields):
    #: One of the installed vendors (`GET /v1/admin/capabilities` lists them), Propexo's
    #: spelling or pmsq's: a string checked by the integration service, since packages may add
    #: vendors.
    integration_vendor: VendorIn
    name: str = Field(min_length=1, max_length=200)
    #: Propexo's default: an integration is inactive (no writes, no syncs) until activated.
    active: bool = False
    system: System = System.PRODUCTION
    allow_manual_syncs: bool = True
    based_on_integration_id: str | None = Field(
        default=None,
        max_length=36,
        description="An integration of the account whose credentials this one copies "
        "when it is given none",
    )
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
    integration_vendor: VendorIn | None = None


def check_rate(frequency: float, cadence: Cadence) -> None:
    """Refuses a request rate below one per minute."""
    if frequency / CADENCE_SECONDS[cadence] < MIN_REQUESTS_PER_S - 1e-12:
        raise ValueError(
            f"max_request_frequency {frequency:g} per {cadence.value} is below the minimum "
            "rate of one request per minute"
        )


class ResponseMeta(BaseModel):
    """Propexo's `meta` of lists and single resources."""

    offset: int
    limit: int
    orderBy: list[dict[str, Literal["asc", "desc"]]] = Field(examples=[[{"created_at": "desc"}]])
    hasMore: bool
    total: int


class Page(BaseModel, Generic[T]):
    """A list in Propexo's envelope."""

    meta: ResponseMeta
    results: list[T]


class Results(BaseModel, Generic[T]):
    """One resource in Propexo's single-resource envelope (`results` is the object)."""

    meta: ResponseMeta
    results: T


class IntegrationInterface(BaseModel):
    interface_name: str = Field(examples=["BUILDIUM_BASE"])
    enabled: bool
    version: str | None


class IntegrationModel(BaseModel):
    enabled: bool
    from_interfaces: list[str]


class ConfigurationMetaData(BaseModel):
    last_seen: str
    interface_name: str | None
    configuration_data: dict[str, str]
    custom_data: dict[str, str] | None


class IntegrationOut(BaseModel):
    """An integration as Propexo answers it (GET, list, create and update alike), with pmsq's
    additions: `integration_vendor` (= `vendor`), `has_credentials`, `custom_sync_schedule`,
    `based_on_integration_id`."""

    id: str
    created_at: datetime
    updated_at: datetime
    name: str
    vendor: VendorOut
    integration_vendor: VendorOut
    customer_id: str = Field(description="The account the integration belongs to")
    active: bool
    system: System
    base_url: str | None
    is_archived: bool
    new_properties_are_enabled: bool
    sync_frequency: int
    sync_cadence: Cadence
    max_request_frequency: int | float
    max_request_cadence: Cadence
    max_job_concurrency: int
    custom_sync_schedule: CustomSyncSchedule | None
    use_custom_sync_schedule: bool
    allow_manual_syncs: bool
    based_on_integration_id: str | None
    last_completed_sync: datetime | None = Field(
        description="When its last successful sync of any kind completed"
    )
    last_completed_back_sync: datetime | None
    is_running_sync: bool
    is_running_data_access_check: bool = Field(
        description="A sync (which is what checks read access) is running"
    )
    last_data_access_check: datetime | None
    can_authenticate: bool = Field(
        description="Credentials are stored; pmsq does not try them until a job runs"
    )
    has_credentials: bool
    integration_interfaces: list[IntegrationInterface]
    models: dict[str, IntegrationModel] = Field(
        description="The models pmsq reads or writes for this vendor"
    )
    configuration_meta_data: list[ConfigurationMetaData]
    ping_results: dict[str, str]


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


class ErrorDetails(BaseModel):
    """Propexo's free-form `details` object; pmsq puts the fields at fault in `fields`."""

    fields: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: ErrorDetails = Field(default_factory=ErrorDetails)


class ErrorResponse(BaseModel):
    error: ErrorBody


class JobScheduleOut(BaseModel):
    """An integration's sync schedule as Propexo shows a job schedule, with pmsq's
    `next_execution_time` and `use_custom_sync_schedule`."""

    id: str
    integration_id: str
    created_at: datetime
    updated_at: datetime
    job_type: str
    status: Literal["ACTIVE", "INACTIVE"] = Field(
        description="INACTIVE while the integration is inactive, archived or deleted"
    )
    last_run: datetime | None
    sync_frequency: int
    sync_cadence: Cadence
    use_custom_sync_schedule: bool
    parameters: dict[str, Any]
    next_execution_time: datetime | None


class SyncExecutionCounts(BaseModel):
    """Polytomic's execution counts."""

    insert: int
    update: int
    delete: int
    upserts: int = Field(description="Records written to the cache: inserts and updates")
    error: int
    warnings: int
    total: int


#: Polytomic's execution statuses (`ExecutionStatus`); pmsq uses queued, running, completed,
#: failed and canceled (a scheduled run skipped while a backsync held the integration).
ExecutionStatus = Literal[
    "created",
    "scheduled",
    "queued",
    "waiting",
    "running",
    "processing",
    "canceling",
    "canceled",
    "completed",
    "failed",
    "interrupted",
]


class SyncExecutionOut(BaseModel):
    """A sync execution in Polytomic's shape, with pmsq's `models` and `job_id`."""

    id: str
    type: str = Field(examples=["manual", "scheduled", "backsync"])
    status: ExecutionStatus
    models: list[str]
    counts: SyncExecutionCounts
    errors: list[str]
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    job_id: str | None


class SyncTriggered(BaseModel):
    success: bool
    execution: SyncExecutionOut = Field(description="The sync started (pmsq's addition)")
    sync_config_id: str | None = Field(
        description="As given: pmsq has one sync configuration per integration"
    )


class SyncTriggeredEnvelope(BaseModel):
    result: SyncTriggered


class ApiRateLimit(BaseModel):
    api: str = Field(examples=["BUILDIUM_BASE"])
    updated_at: datetime
    day_limit: int | None
    hour_limit: int | None
    minute_limit: int | None


class RateLimitsConfigured(BaseModel):
    max_request_frequency: float
    max_request_cadence: Cadence
    max_job_concurrency: int
    request_interval_ms: float


class RateLimitsUsage(BaseModel):
    jobs_in_flight: int
    backlog: int
    next_admission_at: str | None
    paused_until: str | None
    measured_at: str | None


class RateLimitsOut(BaseModel):
    """Propexo's rate limits of an integration (both of its shapes at once: `minute_limit`
    and `api_ratelimits`), the requests pmsq lets through to the PMS; pmsq adds what it is
    configured with, the live usage and the limits the PMS reported in its headers."""

    integration_id: str
    updated_at: datetime
    minute_limit: int | None
    api_ratelimits: list[ApiRateLimit]
    configured: RateLimitsConfigured
    usage: RateLimitsUsage
    pms_reported: dict[str, str]


class RateLimitsEnvelope(BaseModel):
    results: RateLimitsOut


class JobEntry(BaseModel):
    """A job in the job logs: Propexo's job log fields, with pmsq's job fields."""

    id: str
    job_id: str = Field(description="= id: pmsq logs each job under its own id")
    created_at: datetime
    job_type: str = Field(examples=["residents.CREATE"])
    status: str
    parent_job_id: str | None
    root_job_id: str
    job_schedule_id: str | None = Field(description="The sync schedule of a scheduled sync")
    integration_id: str
    associated_property_id: str | None
    retry_of_job_id: str | None
    model: str
    action: str
    attempts: int
    error: str | None
    created_record_id: str | None
    started_at: datetime | None
    finished_at: datetime | None


class ExchangeSummary(BaseModel):
    """One PMS request and its answer (the raw data is behind `job-logs/{id}/data`)."""

    id: str
    job_id: str
    attempt: int
    method: str
    url: str
    response_status: int | None
    duration_ms: float
    error: str | None
    created_at: datetime


class JobAttemptEntry(JobEntry):
    attempt: int | None
    attempt_status: str = Field(description="The job's status, or RETRIED for earlier attempts")
    logs: list[ExchangeSummary]


class JobLogOut(ExchangeSummary):
    """One PMS exchange with its job's fields (Propexo's job log)."""

    job_type: str
    status: str
    parent_job_id: str | None
    root_job_id: str
    job_schedule_id: str | None
    integration_id: str
    associated_property_id: str | None


class RawRequest(BaseModel):
    method: str
    url: str
    headers: dict[str, Any]
    body: str | None


class RawResponse(BaseModel):
    status: int | None
    headers: dict[str, Any]
    body: str | None


class JobLogData(BaseModel):
    """The raw request and response of one PMS call, secrets redacted."""

    id: str
    job_id: str
    request: RawRequest
    response: RawResponse
    duration_ms: float
    error: str | None


class WriteLog(BaseModel):
    """A write's latest state (Propexo's write log, one per job_id)."""

    id: str = Field(description="= job_id")
    created_at: datetime
    updated_at: datetime
    job_id: str
    job_log_id: str | None = Field(description="Its latest PMS exchange; null before any")
    status: WriteStatus = Field(
        description="SUCCESS or FAILURE; pmsq adds PENDING and PARTIAL_SUCCESS"
    )
    write_status: WriteStatus
    integration_id: str
    job_type: str
    error: str | None = Field(description="The first final error of the write's jobs")
    name: str = Field(description="The model written (Propexo's write category)")
    vendor: VendorOut
    model: str
    write_category: str = Field(description="CREATE or UPDATE (pmsq's)")
    jobs_total: int
    jobs_failed: int
    created_record_id: str | None
    retry_of_job_id: str | None


class WriteLogs(BaseModel):
    logs: list[WriteLog]


class WriteLogPage(BaseModel):
    """Propexo's `{results: {logs}}`; pmsq adds the paging `meta`."""

    meta: ResponseMeta
    results: WriteLogs


class DataDiffOut(BaseModel):
    id: str
    model: str
    model_record_id: str
    event_type: Literal["NEW", "UPDATE", "DELETE"] = Field(
        description="NEW or UPDATE; pmsq adds DELETE (a record gone from the PMS)"
    )
    data_diff: dict[str, Any]
    created_at: datetime
    job_id: str | None
    integration_id: str
    integration_vendor: VendorOut
    execution_id: str


class SyncStatusOut(BaseModel):
    current_execution: SyncExecutionOut | None
    last_execution: SyncExecutionOut | None
    next_execution_time: datetime | None


class SyncStatusEnvelope(BaseModel):
    """Polytomic's sync status: `{data: {current_execution, last_execution,
    next_execution_time}}`."""

    data: SyncStatusOut


class UserOut(BaseModel):
    """Propexo's dashboard user; pmsq keeps none (accounts act through API tokens)."""

    id: str
    created_at: datetime
    updated_at: datetime
    first_name: str
    last_name: str
    email: str
    roles: list[Literal["ADMIN", "DEVELOPER", "SUPPORT", "READ_ONLY"]]


class AccessStatus(BaseModel):
    """A check's outcome for one model and action (the PMS's refusal in `error_message`)."""

    status: Literal["SUCCESS", "FAILED", "PROCESSING"]
    error_message: str | None


class AccessUnsupported(BaseModel):
    """The vendor's profile has no such action on the model."""

    unsupported: bool = True


class AccessUntested(BaseModel):
    """No check has tried it."""

    untested: bool = True


#: One model and action of a data access report (Propexo's three shapes).
AccessCheck = AccessStatus | AccessUnsupported | AccessUntested


class ModelAccess(BaseModel):
    read: AccessCheck
    create: AccessCheck
    update: AccessCheck


class DataAccessOut(BaseModel):
    models: dict[str, ModelAccess]
    last_data_access_check: datetime | None
    data_access_check_in_process: bool


class DataAccessEnvelope(BaseModel):
    result: DataAccessOut


class DataAccessCheckIn(BaseModel):
    """Propexo's (empty) body of a data access check."""

    model_config = ConfigDict(extra="forbid")


class DataAccessStarted(BaseModel):
    began_data_access: bool = Field(
        description="A check (a full read sync) started; false while a sync runs, or when "
        "the integration takes no manual sync"
    )


class DataAccessStartedEnvelope(BaseModel):
    result: DataAccessStarted


class NormalizationOut(BaseModel):
    is_custom_mapping: bool
    mappings: dict[str, str]
    default_value: str


class NormalizationEnvelope(BaseModel):
    results: NormalizationOut


class Success(BaseModel):
    success: bool


class ModelCapabilities(BaseModel):
    actions: list[str]
    fields: list[str]


class VendorCapabilities(BaseModel):
    supports_idempotency_key: bool
    reference_field: str | None
    models: dict[str, ModelCapabilities]


class CapabilitiesOut(BaseModel):
    vendors: dict[str, VendorCapabilities]


class VendorCapabilitiesOut(VendorCapabilities):
    vendor: str


class RecordOut(BaseModel):
    """A record from the read cache: the PMS's version of it at `synced_at`."""

    id: str
    record_id: str = Field(description="The record's id at the PMS")
    integration_id: str
    synced_at: datetime
    data: dict[str, Any]


class RecordEnvelope(BaseModel):
    result: RecordOut


class HealthOut(BaseModel):
    ok: bool

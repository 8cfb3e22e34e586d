"""Propexo's response shapes, written from its public OpenAPI spec, to judge pmsq's answers.

Each model is what a Propexo client may rely on: the spec's required fields with their types
and enums. Fields pmsq adds are allowed (`extra="allow"`): a client ignores them. Strict
types, so a number where the spec says string (or a string where it says an array) fails.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr

Cadence = Literal["MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "SECOND"]
#: The vendors of an integration's `vendor` on the wire (Propexo's spelling).
Vendor = Literal[
    "SAMPLE2", "BUILDIUM", "ENTRATA", "FUNNEL", "KNOCK", "MRI", "PROPERTYWARE",
    "PROPERTYWARE_REST", "REALPAGE", "REALPAGE_RPX", "SAMPLE3", "RENTMANAGER", "RENTVINE",
    "RESMAN", "SAMPLE1",
    # pmsq's vendors Propexo does not list: additions a Propexo client never creates.
    "SANDBOX", "APPFOLIO", "YARDI",
]  # fmt: skip
System = Literal["PRODUCTION", "SANDBOX"]


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ResponseMeta(Shape):
    offset: StrictInt | None = None
    limit: StrictInt | None = None
    orderBy: list[dict[str, Any]]
    hasMore: StrictBool | None = None
    total: StrictInt | None = None


class ErrorBody(Shape):
    code: StrictStr
    message: StrictStr
    details: dict[str, Any] | None = None


class ErrorResponse(Shape):
    error: ErrorBody


class IntegrationInterface(Shape):
    interface_name: StrictStr
    enabled: StrictBool
    version: StrictStr | None


class IntegrationModel(Shape):
    enabled: StrictBool
    from_interfaces: list[StrictStr]


class ConfigurationMetaData(Shape):
    last_seen: StrictStr
    interface_name: StrictStr | None
    configuration_data: dict[str, Any]
    custom_data: dict[str, Any] | None


class Integration(Shape):
    """An item of `GET /v1/admin/integrations/` (`_v1_admin_integrations__get_output`)."""

    id: StrictStr
    created_at: StrictStr
    updated_at: StrictStr
    name: StrictStr
    vendor: Vendor
    active: StrictBool
    system: System
    sync_frequency: StrictInt | None = None
    sync_cadence: Cadence | None = None
    max_job_concurrency: StrictInt
    max_request_frequency: StrictInt
    max_request_cadence: Cadence
    base_url: StrictStr | None
    is_archived: StrictBool
    last_completed_sync: StrictStr | None
    last_completed_back_sync: StrictStr | None
    new_properties_are_enabled: StrictBool
    integration_interfaces: list[IntegrationInterface]
    models: dict[str, IntegrationModel]
    can_authenticate: StrictBool
    last_data_access_check: StrictStr | None
    allow_manual_syncs: StrictBool = True
    configuration_meta_data: list[ConfigurationMetaData]


class IntegrationById(Integration):
    """`results` of `GET /v1/admin/integrations/{integration_id}/`."""

    is_running_sync: StrictBool
    is_running_data_access_check: StrictBool


class IntegrationCreated(Shape):
    """`result` of `POST /v1/admin/integrations/`."""

    id: StrictStr
    created_at: StrictStr
    updated_at: StrictStr
    name: StrictStr | None
    vendor: Vendor
    active: StrictBool
    system: System
    sync_frequency: StrictInt
    sync_cadence: Cadence
    max_request_cadence: Cadence = "SECOND"
    max_request_frequency: StrictInt | StrictFloat = 1
    max_job_concurrency: StrictInt = 1
    base_url: StrictStr | None
    customer_id: StrictStr
    is_archived: StrictBool
    ping_results: dict[str, StrictStr]
    new_properties_are_enabled: StrictBool
    allow_manual_syncs: StrictBool = True
    custom_sync_schedule: dict[str, Any] | None = None
    use_custom_sync_schedule: StrictBool


class IntegrationUpdated(Shape):
    """`result` of `PUT /v1/admin/integrations/{integration_id}/` (it says
    `integration_vendor` where the others say `vendor`)."""

    id: StrictStr
    created_at: StrictStr
    updated_at: StrictStr
    name: StrictStr | None
    integration_vendor: Vendor
    active: StrictBool
    system: System
    sync_frequency: StrictInt | None
    sync_cadence: Cadence | None
    max_request_cadence: Cadence = "SECOND"
    max_request_frequency: StrictInt | StrictFloat = 10
    max_job_concurrency: StrictInt = 1
    base_url: StrictStr | None
    is_archived: StrictBool
    new_properties_are_enabled: StrictBool
    allow_manual_syncs: StrictBool = True
    custom_sync_schedule: dict[str, Any] | None = None
    use_custom_sync_schedule: StrictBool | None = None


class IntegrationList(Shape):
    meta: ResponseMeta
    results: list[Integration]


class IntegrationOne(Shape):
    meta: ResponseMeta
    results: IntegrationById | None


class IntegrationCreateResponse(Shape):
    result: IntegrationCreated


class IntegrationUpdateResponse(Shape):
    result: IntegrationUpdated


class Success(Shape):
    success: StrictBool


class JobSchedule(Shape):
    id: StrictStr
    integration_id: StrictStr
    created_at: StrictStr
    updated_at: StrictStr
    job_type: StrictStr
    status: Literal["ACTIVE", "INACTIVE"]
    last_run: StrictStr | None
    sync_frequency: StrictInt
    sync_cadence: Cadence
    parameters: dict[str, Any]


class JobScheduleList(Shape):
    meta: ResponseMeta
    results: list[JobSchedule]


class JobScheduleOne(Shape):
    meta: ResponseMeta
    results: JobSchedule


class SyncTriggerResult(Shape):
    success: StrictBool


class SyncTriggerResponse(Shape):
    """Answer of `POST .../manual-sync` and `.../back-sync`."""

    result: SyncTriggerResult


class ApiRateLimit(Shape):
    api: StrictStr
    updated_at: StrictStr
    day_limit: StrictInt | None
    hour_limit: StrictInt | None
    minute_limit: StrictInt | None


class RateLimitsByApi(Shape):
    integration_id: StrictStr
    api_ratelimits: list[ApiRateLimit]


class RateLimitsPerMinute(Shape):
    integration_id: StrictStr
    updated_at: StrictStr
    minute_limit: StrictInt | None


class RateLimitsResponse(Shape):
    """`GET .../rate-limits/`: `results` is either shape (pmsq answers both at once)."""

    results: RateLimitsByApi | RateLimitsPerMinute


class JobLog(Shape):
    """An item of `GET /v1/admin/logs/jobs/` and `.../logs/jobs/{id}`, and `results` of
    `GET /v1/admin/job-logs/{job_log_id}/`."""

    id: StrictStr
    job_id: StrictStr | None
    created_at: StrictStr
    job_type: StrictStr
    status: StrictStr
    parent_job_id: StrictStr | None
    root_job_id: StrictStr
    job_schedule_id: StrictStr | None
    integration_id: StrictStr
    associated_property_id: StrictStr | None


class JobLogList(Shape):
    meta: ResponseMeta
    results: list[JobLog]


class JobLogOne(Shape):
    meta: ResponseMeta
    results: JobLog


class WriteLog(Shape):
    id: StrictStr
    created_at: StrictStr
    job_id: StrictStr
    job_log_id: StrictStr
    status: Literal["SUCCESS", "FAILURE"]
    integration_id: StrictStr
    job_type: StrictStr
    error: StrictStr | None
    name: StrictStr
    vendor: Vendor


class WriteLogs(Shape):
    logs: list[WriteLog]


class WriteLogsResponse(Shape):
    """`GET /v1/admin/logs/writes/`: `{results: {logs}}`."""

    results: WriteLogs


class DataDiff(Shape):
    id: StrictStr
    model: StrictStr
    model_record_id: StrictStr
    event_type: Literal["NEW", "UPDATE"]
    data_diff: dict[str, Any]
    created_at: StrictStr
    job_id: StrictStr | None
    integration_id: StrictStr
    integration_vendor: Vendor


class DataDiffList(Shape):
    meta: ResponseMeta
    results: list[DataDiff]


class WebhookHeader(Shape):
    header: StrictStr
    value: StrictStr


class WebhookTrigger(Shape):
    id: StrictStr
    trigger: StrictStr
    model: StrictStr | None


class Webhook(Shape):
    id: StrictStr
    created_at: StrictStr
    updated_at: StrictStr
    url: StrictStr
    headers: list[WebhookHeader] | None = None
    active: StrictBool
    secret: StrictStr
    system: System
    triggers: list[WebhookTrigger] = []


class WebhookResponse(Shape):
    """Answer of `POST /v1/webhooks/` and `PUT /v1/webhooks/{webhook_id}`."""

    result: Webhook


class WebhookList(Shape):
    meta: ResponseMeta
    results: list[Webhook]


class WebhookOne(Shape):
    meta: ResponseMeta
    results: Webhook


class WebhookDeletedId(Shape):
    id: StrictStr


class WebhookDeleted(Shape):
    result: WebhookDeletedId


class User(Shape):
    id: StrictStr
    created_at: StrictStr
    updated_at: StrictStr
    first_name: StrictStr
    last_name: StrictStr
    email: StrictStr
    roles: list[Literal["ADMIN", "DEVELOPER", "SUPPORT", "READ_ONLY"]]


class UserList(Shape):
    meta: ResponseMeta
    results: list[User]


class PropertyConfiguration(Shape):
    id: StrictStr
    created_at: StrictStr
    integration_id: StrictStr
    property_id: StrictStr
    enabled: StrictBool


class PropertyConfigurationList(Shape):
    meta: ResponseMeta
    results: list[PropertyConfiguration]


class PropertyListConfiguration(Shape):
    id: StrictStr
    created_at: StrictStr
    integration_id: StrictStr
    property_list_id: StrictStr
    x_property_list_id: StrictStr
    enabled: StrictBool


class PropertyListConfigurationList(Shape):
    meta: ResponseMeta
    results: list[PropertyListConfiguration]


class PropertyConfigurationUpdated(PropertyConfiguration):
    additional_message: StrictStr | None = None


class PropertyConfigurationUpdateResponse(Shape):
    results: PropertyConfigurationUpdated


class AccessStatus(Shape):
    status: Literal["SUCCESS", "FAILED", "PROCESSING"]
    error_message: StrictStr | None


class AccessUnsupported(Shape):
    unsupported: StrictBool


class AccessUntested(Shape):
    untested: StrictBool


Access = AccessStatus | AccessUnsupported | AccessUntested


class ModelAccess(Shape):
    read: Access | None = None
    create: Access | None = None
    update: Access | None = None


class DataAccess(Shape):
    models: dict[str, ModelAccess]
    last_data_access_check: StrictStr | None
    data_access_check_in_process: StrictBool


class DataAccessResponse(Shape):
    result: DataAccess


class DataAccessStarted(Shape):
    began_data_access: StrictBool


class DataAccessStartedResponse(Shape):
    result: DataAccessStarted


class Normalization(Shape):
    is_custom_mapping: StrictBool
    mappings: dict[str, StrictStr]
    default_value: StrictStr


class NormalizationResponse(Shape):
    results: Normalization

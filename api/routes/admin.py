"""Admin endpoints: write status, integrations, capabilities."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from pmsq.api.context import ApiContext
from pmsq.api.pagination import PageRequest, page_request, single
from pmsq.api.routes.deps import account_dependency, refuse_unknown_query
from pmsq.errors import NotFound
from pmsq.models.enums import vendor_from_wire
from pmsq.models.normalization import EnumMappingUpdate
from pmsq.models.schemas import (
    CapabilitiesOut,
    DataAccessCheckIn,
    DataAccessEnvelope,
    DataAccessStarted,
    DataAccessStartedEnvelope,
    ErrorResponse,
    IntegrationCreate,
    IntegrationEnvelope,
    IntegrationOut,
    IntegrationUpdate,
    NormalizationEnvelope,
    Page,
    RateLimitsEnvelope,
    Results,
    RetryAccepted,
    Success,
    UserOut,
    VendorCapabilitiesOut,
    VendorIn,
    WriteStatusOut,
)
from pmsq.pms.registry import capabilities, profile_for

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404)
}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1/admin", tags=["admin"], dependencies=[Depends(refuse_unknown_query)]
    )
    current_account = account_dependency(ctx)

    @router.get(
        "/write-status/{root_job_id}",
        response_model=WriteStatusOut,
        responses=ERRORS,
        summary="Check the status of a write operation",
    )
    def write_status(
        root_job_id: str, account_id: str = Depends(current_account)
    ) -> WriteStatusOut:
        outcome = ctx.writes.status(account_id, root_job_id)
        return WriteStatusOut(
            write_status=outcome.write_status,
            errors=outcome.errors,
            created_record_id=outcome.created_record_id,
        )

    @router.post(
        "/integrations/",
        response_model=IntegrationEnvelope,
        responses=ERRORS,
        summary="Create an integration",
    )
    def create_integration(
        spec: IntegrationCreate, account_id: str = Depends(current_account)
    ) -> IntegrationEnvelope:
        return IntegrationEnvelope(result=ctx.integrations.create(account_id, spec))

    @router.get(
        "/integrations/",
        response_model=Page[IntegrationOut],
        responses=ERRORS,
        summary="Get all my integrations",
    )
    def list_integrations(
        integration_vendor: VendorIn | None = Query(default=None),
        is_archived: bool | None = None,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.integrations.list(
            account_id,
            page,
            vendor=integration_vendor,
            is_archived=is_archived,
        )

    @router.delete(
        "/integrations/{integration_id}/",
        response_model=Success,
        responses={**ERRORS, 409: {"model": ErrorResponse}},
        summary="Delete an integration (refused while it has unfinished jobs)",
    )
    def delete_integration(
        integration_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, bool]:
        ctx.integrations.delete(account_id, integration_id)
        return {"success": True}

    @router.post(
        "/retry-write/{root_job_id}",
        response_model=RetryAccepted,
        responses={**ERRORS, 409: {"model": ErrorResponse}},
        summary="Retry a write operation (only FAILURE or PARTIAL_SUCCESS)",
    )
    def retry_write(root_job_id: str, account_id: str = Depends(current_account)) -> RetryAccepted:
        return RetryAccepted(success=True, job_id=ctx.retries.retry(account_id, root_job_id))

    @router.get(
        "/integrations/{integration_id}/",
        response_model=Results[IntegrationOut],
        responses=ERRORS,
        summary="Get integration by id",
    )
    def get_integration(
        integration_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return single(ctx.integrations.get(account_id, integration_id))

    @router.put(
        "/integrations/{integration_id}/",
        response_model=IntegrationEnvelope,
        responses=ERRORS,
        summary="Update an integration (partial)",
    )
    def update_integration(
        integration_id: str, spec: IntegrationUpdate, account_id: str = Depends(current_account)
    ) -> IntegrationEnvelope:
        return IntegrationEnvelope(result=ctx.integrations.update(account_id, integration_id, spec))

    @router.get(
        "/integrations/{integration_id}/rate-limits/",
        response_model=RateLimitsEnvelope,
        responses=ERRORS,
        summary="PMS rate limits: configured, live usage, and limits the PMS reported",
    )
    def rate_limits(
        integration_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return {"results": ctx.integrations.rate_limits(account_id, integration_id)}

    @router.get(
        "/users/",
        response_model=Page[UserOut],
        responses=ERRORS,
        summary="Users: none, pmsq's accounts act through API tokens",
    )
    def list_users(
        _user_id: str | None = Query(default=None, alias="id"),
        page: PageRequest = Depends(page_request),
        _account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        envelope = single([])
        envelope["meta"].update(offset=page.offset, limit=page.limit, total=0)
        return envelope

    @router.get(
        "/users/{user_id}", response_model=Results[UserOut], responses=ERRORS, summary="A user"
    )
    def get_user(user_id: str, _account_id: str = Depends(current_account)) -> dict[str, Any]:
        raise NotFound(f"no user with id '{user_id}'", [{"field": "id", "reason": "unknown user"}])

    @router.get(
        "/integrations/{integration_id}/data-access",
        response_model=DataAccessEnvelope,
        responses=ERRORS,
        summary="Get data access information for an integration (reads as its newest syncs "
        "found them)",
    )
    def data_access(
        integration_id: str, account_id: str = Depends(current_account)
    ) -> DataAccessEnvelope:
        return DataAccessEnvelope(result=ctx.data_access.report(account_id, integration_id))

    @router.post(
        "/integrations/{integration_id}/data-access",
        response_model=DataAccessStartedEnvelope,
        responses=ERRORS,
        summary="Trigger a data access check on an integration (a full read sync; one at a time)",
    )
    def start_data_access(
        integration_id: str,
        _body: DataAccessCheckIn | None = None,
        account_id: str = Depends(current_account),
    ) -> DataAccessStartedEnvelope:
        began = ctx.data_access.start(account_id, integration_id)
        return DataAccessStartedEnvelope(result=DataAccessStarted(began_data_access=began))

    @router.get(
        "/normalization/{model}/{field}",
        response_model=NormalizationEnvelope,
        responses=ERRORS,
        summary="Get custom enum mappings for normalizing PMS-specific field values (the "
        "integration's own, else the vendor's default)",
    )
    def normalization(
        model: str,
        field: str,
        integration_vendor: Annotated[VendorIn, Query()],
        integration_id: str | None = None,
        account_id: str = Depends(current_account),
    ) -> NormalizationEnvelope:
        return NormalizationEnvelope(
            results=ctx.normalization.get(
                account_id, model, field, integration_vendor, integration_id
            )
        )

    @router.put(
        "/normalization/{model}/{field}",
        response_model=NormalizationEnvelope,
        responses=ERRORS,
        summary="Set an integration's own enum mapping (pmsq's addition: Propexo sets them in "
        "its dashboard)",
    )
    def put_normalization(
        model: str,
        field: str,
        spec: EnumMappingUpdate,
        integration_id: Annotated[str, Query()],
        account_id: str = Depends(current_account),
    ) -> NormalizationEnvelope:
        return NormalizationEnvelope(
            results=ctx.normalization.put(account_id, model, field, integration_id, spec)
        )

    @router.delete(
        "/normalization/{model}/{field}",
        response_model=NormalizationEnvelope,
        responses=ERRORS,
        summary="Drop an integration's own enum mapping: its vendor's default applies again "
        "(pmsq's addition)",
    )
    def delete_normalization(
        model: str,
        field: str,
        integration_id: Annotated[str, Query()],
        account_id: str = Depends(current_account),
    ) -> NormalizationEnvelope:
        return NormalizationEnvelope(
            results=ctx.normalization.delete(account_id, model, field, integration_id)
        )

    @router.get(
        "/capabilities",
        response_model=CapabilitiesOut,
        summary="Which vendor supports which model, action and field",
    )
    def get_capabilities(_account_id: str = Depends(current_account)) -> dict[str, Any]:
        return {"vendors": capabilities()}

    @router.get(
        "/capabilities/{vendor}",
        response_model=VendorCapabilitiesOut,
        responses=ERRORS,
        summary="One vendor's models, actions and fields",
    )
    def get_vendor_capabilities(
        vendor: str, _account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        profile = profile_for(str(vendor_from_wire(vendor.upper())))
        return {"vendor": profile.vendor, **capabilities()[profile.vendor]}

    return router

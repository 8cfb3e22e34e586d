"""Admin endpoints: write status, integrations, capabilities."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from pmsq.api.context import ApiContext
from pmsq.api.pagination import PageRequest, page_request
from pmsq.api.routes.deps import account_dependency
from pmsq.models.schemas import (
    ErrorResponse,
    IntegrationCreate,
    IntegrationEnvelope,
    IntegrationUpdate,
    RetryAccepted,
    WriteStatusOut,
)
from pmsq.pms.registry import capabilities, profile_for

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404)
}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"])
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
        status_code=201,
        response_model=IntegrationEnvelope,
        responses=ERRORS,
        summary="Create an integration",
    )
    def create_integration(
        spec: IntegrationCreate, account_id: str = Depends(current_account)
    ) -> IntegrationEnvelope:
        return IntegrationEnvelope(result=ctx.integrations.create(account_id, spec))

    @router.get("/integrations/", responses=ERRORS, summary="Get all my integrations")
    def list_integrations(
        page: PageRequest = Depends(page_request), account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return ctx.integrations.list(account_id, page)

    @router.delete(
        "/integrations/{integration_id}/",
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
        response_model=IntegrationEnvelope,
        responses=ERRORS,
        summary="Get integration by id",
    )
    def get_integration(
        integration_id: str, account_id: str = Depends(current_account)
    ) -> IntegrationEnvelope:
        return IntegrationEnvelope(result=ctx.integrations.get(account_id, integration_id))

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
        responses=ERRORS,
        summary="Configured PMS rate limits, live usage, and limits the PMS reported",
    )
    def rate_limits(
        integration_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return {"result": ctx.integrations.rate_limits(account_id, integration_id)}

    @router.get("/capabilities", summary="Which vendor supports which model, action and field")
    def get_capabilities(_account_id: str = Depends(current_account)) -> dict[str, Any]:
        return {"vendors": capabilities()}

    @router.get(
        "/capabilities/{vendor}",
        responses=ERRORS,
        summary="One vendor's models, actions and fields",
    )
    def get_vendor_capabilities(
        vendor: str, _account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        profile = profile_for(vendor.upper())
        return {"vendor": profile.vendor, **capabilities()[profile.vendor]}

    return router

"""Sync endpoints: manual sync, backsync, job schedules, sync status, data diffs, cached reads."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from pmsq.api.context import ApiContext
from pmsq.api.pagination import PageRequest, page_request
from pmsq.api.routes.deps import account_dependency
from pmsq.models.schemas import ErrorResponse
from pmsq.models.sync import SyncType

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409)
}


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models_to_sync: list[str] | None = Field(
        default=None, description="Models to read; all the vendor has when omitted"
    )


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["syncs"])
    current_account = account_dependency(ctx)
    base = "/v1/admin/integrations/{integration_id}"

    @router.post(f"{base}/manual-sync", responses=ERRORS, summary="Trigger a manual sync")
    def manual_sync(
        integration_id: str,
        request: SyncRequest | None = Body(default=None),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        models = request.models_to_sync if request else None
        return ctx.syncs.trigger(account_id, integration_id, SyncType.MANUAL, models)

    @router.post(
        f"{base}/back-sync",
        responses=ERRORS,
        summary="Trigger a backsync (other syncs of the integration wait until it ends)",
    )
    def back_sync(
        integration_id: str,
        request: SyncRequest | None = Body(default=None),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        models = request.models_to_sync if request else None
        return ctx.syncs.trigger(account_id, integration_id, SyncType.BACKSYNC, models)

    @router.get(f"{base}/job-schedules/", responses=ERRORS, summary="Job schedules")
    def job_schedules(
        integration_id: str,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.syncs.schedules(account_id, integration_id, page)

    @router.get(
        f"{base}/job-schedules/{{schedule_id}}/", responses=ERRORS, summary="Job schedule by id"
    )
    def job_schedule(
        integration_id: str, schedule_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return {"result": ctx.syncs.schedule(account_id, integration_id, schedule_id)}

    @router.get(f"{base}/sync-status", responses=ERRORS, summary="Sync status")
    def sync_status(
        integration_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return {"data": ctx.syncs.status(account_id, integration_id)}

    @router.get("/v1/admin/data-diffs/", responses=ERRORS, summary="Get all data diffs")
    def data_diffs(
        integration_id: str | None = None,
        model: str | None = None,
        diff_type: Literal["NEW", "UPDATE", "DELETE"] | None = None,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.syncs.diffs(
            account_id, page, integration_id=integration_id, model=model, diff_type=diff_type
        )

    @router.get("/v1/{model}/", responses=ERRORS, tags=["reads"], summary="Records from the cache")
    def list_records(
        model: str,
        integration_id: str | None = None,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.records.list(account_id, model, page, integration_id)

    @router.get(
        "/v1/{model}/{record_id}", responses=ERRORS, tags=["reads"], summary="A cached record"
    )
    def get_record(
        model: str, record_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return ctx.records.get(account_id, model, record_id)

    return router

"""Sync endpoints: manual sync, backsync, job schedules, sync status, data diffs, cached reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from pmsq.api.context import ApiContext
from pmsq.api.pagination import PageRequest, page_request, single
from pmsq.api.routes.deps import account_dependency, refuse_unknown_query
from pmsq.models.schemas import (
    DataDiffOut,
    ErrorResponse,
    JobScheduleOut,
    Page,
    RecordEnvelope,
    RecordOut,
    Results,
    SyncStatusEnvelope,
    SyncTriggeredEnvelope,
    VendorIn,
)
from pmsq.models.sync import SyncType

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409)
}


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models_to_sync: list[str] | None = Field(
        default=None, description="Models to read; all the vendor has when omitted"
    )
    sync_config_id: str | None = Field(
        default=None,
        max_length=200,
        description="Accepted and echoed: pmsq has one sync configuration per integration",
    )


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["syncs"], dependencies=[Depends(refuse_unknown_query)])
    current_account = account_dependency(ctx)
    base = "/v1/admin/integrations/{integration_id}"

    def trigger(
        account_id: str, integration_id: str, kind: SyncType, request: SyncRequest | None
    ) -> dict[str, Any]:
        request = request or SyncRequest()
        return {
            "result": ctx.syncs.trigger(
                account_id, integration_id, kind, request.models_to_sync, request.sync_config_id
            )
        }

    @router.post(
        f"{base}/manual-sync",
        response_model=SyncTriggeredEnvelope,
        responses=ERRORS,
        summary="Trigger a manual sync (409 if the integration does not allow manual syncs)",
    )
    def manual_sync(
        integration_id: str,
        request: SyncRequest | None = Body(default=None),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return trigger(account_id, integration_id, SyncType.MANUAL, request)

    @router.post(
        f"{base}/back-sync",
        response_model=SyncTriggeredEnvelope,
        responses=ERRORS,
        summary="Trigger a backsync (other syncs of the integration wait until it ends)",
    )
    def back_sync(
        integration_id: str,
        request: SyncRequest | None = Body(default=None),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return trigger(account_id, integration_id, SyncType.BACKSYNC, request)

    @router.get(
        f"{base}/job-schedules/",
        response_model=Page[JobScheduleOut],
        responses=ERRORS,
        summary="Job schedules",
    )
    def job_schedules(
        integration_id: str,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.syncs.schedules(account_id, integration_id, page)

    @router.get(
        f"{base}/job-schedules/{{schedule_id}}/",
        response_model=Results[JobScheduleOut],
        responses=ERRORS,
        summary="Job schedule by id",
    )
    def job_schedule(
        integration_id: str, schedule_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return single(ctx.syncs.schedule(account_id, integration_id, schedule_id))

    @router.get(
        f"{base}/sync-status",
        response_model=SyncStatusEnvelope,
        responses=ERRORS,
        summary="Sync status (Polytomic's shape)",
    )
    def sync_status(
        integration_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return {"data": ctx.syncs.status(account_id, integration_id)}

    @router.get(
        "/v1/admin/data-diffs/",
        response_model=Page[DataDiffOut],
        responses=ERRORS,
        summary="Get all data diffs",
    )
    def data_diffs(
        integration_id: str | None = None,
        integration_vendor: VendorIn | None = Query(default=None),
        before: datetime | None = Query(default=None, description="created_at before this"),
        after: datetime | None = Query(default=None, description="created_at after this"),
        model: str | None = Query(default=None, description="pmsq's: one model"),
        event_type: Literal["NEW", "UPDATE", "DELETE"] | None = Query(
            default=None, description="pmsq's: one kind of change"
        ),
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.syncs.diffs(
            account_id,
            page,
            integration_id=integration_id,
            vendor=integration_vendor,
            model=model,
            event_type=event_type,
            before=before,
            after=after,
        )

    @router.get(
        "/v1/{model}/",
        response_model=Page[RecordOut],
        responses=ERRORS,
        tags=["reads"],
        summary="Records from the cache",
    )
    def list_records(
        model: str,
        integration_id: str | None = None,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.records.list(account_id, model, page, integration_id)

    @router.get(
        "/v1/{model}/{record_id}",
        response_model=RecordEnvelope,
        responses=ERRORS,
        tags=["reads"],
        summary="A cached record",
    )
    def get_record(
        model: str, record_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return ctx.records.get(account_id, model, record_id)

    return router

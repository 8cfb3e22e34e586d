"""Job and write logs: `/v1/admin/logs/...` and `/v1/admin/job-logs/...`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from pmsq.api.context import ApiContext
from pmsq.api.pagination import PageRequest, page_request
from pmsq.api.routes.deps import account_dependency
from pmsq.models.enums import JobStatus, WriteStatus
from pmsq.models.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404)
}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["logs"])
    current_account = account_dependency(ctx)

    @router.get("/logs/jobs/", responses=ERRORS, summary="Get logs: jobs, newest first")
    def list_jobs(
        status: JobStatus | None = None,
        integration_id: str | None = None,
        job_type: str | None = Query(
            default=None, description='"model" or "model.ACTION", e.g. "residents.CREATE"'
        ),
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.job_logs.list_jobs(
            account_id,
            page,
            status=status,
            integration_id=integration_id,
            job_type_filter=job_type,
        )

    @router.get(
        "/logs/jobs/{job_id}",
        responses=ERRORS,
        summary="Get logs by job id: one entry per attempt, with the jobs below it",
    )
    def job_attempts(
        job_id: str,
        include_all_jobs: bool = True,
        account_id: str = Depends(current_account),
    ) -> list[dict[str, Any]]:
        return ctx.job_logs.job_attempts(account_id, job_id, include_all_jobs)

    @router.get("/job-logs/{log_id}/", responses=ERRORS, summary="Get log by id")
    def job_log(log_id: str, account_id: str = Depends(current_account)) -> dict[str, Any]:
        return ctx.job_logs.log(account_id, log_id)

    @router.get(
        "/job-logs/{log_id}/data",
        responses=ERRORS,
        summary="The raw request and response of one PMS call (secrets redacted)",
    )
    def job_log_data(log_id: str, account_id: str = Depends(current_account)) -> dict[str, Any]:
        return ctx.job_logs.log_data(account_id, log_id)

    @router.get("/logs/writes/", responses=ERRORS, summary="Query write job logs")
    def writes(
        time_range: Literal["hour", "day", "week", "month"] | None = None,
        status: WriteStatus | None = None,
        integration_id: str | None = None,
        write_category: Literal["CREATE", "UPDATE"] | None = None,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.job_logs.writes(
            account_id,
            page,
            time_range=time_range,
            status=status,
            integration_id=integration_id,
            write_category=write_category,
        )

    return router

"""Job and write logs: `/v1/admin/logs/...` and `/v1/admin/job-logs/...`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import RedirectResponse

from pmsq.api.context import ApiContext
from pmsq.api.pagination import MAX_WRITE_LOG_LIMIT, PageRequest, page_request, single
from pmsq.api.routes.deps import account_dependency, refuse_unknown_query
from pmsq.models.enums import JobStatus, WriteStatus
from pmsq.models.schemas import (
    ErrorResponse,
    JobAttemptEntry,
    JobEntry,
    JobLogData,
    JobLogOut,
    Page,
    Results,
    WriteLogPage,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404)
}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1/admin", tags=["logs"], dependencies=[Depends(refuse_unknown_query)]
    )
    current_account = account_dependency(ctx)

    @router.get(
        "/logs/jobs/",
        response_model=Page[JobEntry],
        responses=ERRORS,
        summary="Get logs: jobs, newest first",
    )
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
        response_model=Page[JobAttemptEntry],
        responses=ERRORS,
        summary="Get logs by job id: one entry per attempt, with the jobs below it",
    )
    def job_attempts(
        job_id: str,
        include_all_jobs: bool = True,
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        entries = ctx.job_logs.job_attempts(account_id, job_id, include_all_jobs)
        envelope = single(entries, "created_at:asc")
        envelope["meta"].update(limit=len(entries), total=len(entries))
        return envelope

    @router.get(
        "/job-logs/{log_id}/",
        response_model=Results[JobLogOut],
        responses=ERRORS,
        summary="Get log by id",
    )
    def job_log(log_id: str, account_id: str = Depends(current_account)) -> dict[str, Any]:
        return single(ctx.job_logs.log(account_id, log_id))

    @router.get(
        "/job-logs/{log_id}/data",
        status_code=302,
        response_class=RedirectResponse,
        responses={
            **ERRORS,
            302: {"description": "Location: a short-lived link to the raw data (no token)"},
        },
        summary="A link to the raw request and response of one PMS call (secrets redacted)",
    )
    def job_log_data(log_id: str, account_id: str = Depends(current_account)) -> RedirectResponse:
        return RedirectResponse(ctx.job_logs.data_link(account_id, log_id), status_code=302)

    @router.get(
        "/job-logs/{log_id}/raw",
        response_model=JobLogData,
        responses=ERRORS,
        summary="The raw request and response behind a link from .../data (signed, no token)",
    )
    def job_log_raw(
        log_id: str, expires: int = Query(ge=0), signature: str = Query(max_length=128)
    ) -> dict[str, Any]:
        return ctx.job_logs.linked_data(log_id, expires, signature)

    @router.get(
        "/logs/writes/",
        response_model=WriteLogPage,
        responses=ERRORS,
        summary="Query write job logs: the latest state of each write",
    )
    def writes(
        time_range: Literal["hour", "day", "week", "month"] | None = None,
        status: WriteStatus | None = None,
        integration_id: str | None = None,
        write_category: str | None = Query(
            default=None,
            pattern="^([a-z_]{1,60}|CREATE|UPDATE)$",
            description='A model ("residents"), or "CREATE" / "UPDATE" (pmsq\'s)',
        ),
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        if page.limit > MAX_WRITE_LOG_LIMIT:
            page = PageRequest(page.offset, MAX_WRITE_LOG_LIMIT, page.order_by)
        return ctx.job_logs.writes(
            account_id,
            page,
            time_range=time_range,
            status=status,
            integration_id=integration_id,
            write_category=write_category,
        )

    return router

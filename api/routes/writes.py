"""Generic write endpoints: `POST /v1/{model}/`, `PUT /v1/{model}/{id}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from api.context import ApiContext
from api.routes.deps import account_dependency, json_body_dependency
from models.schemas import ErrorResponse, WriteAccepted

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413)
}
BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {
                    "integration_id": "8b0f2f0e-3c53-4b8e-9a3c-4f1f0d3c2a10",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "email": "ada@example.com",
                },
            }
        },
    }
}
IGNORE_UNKNOWN = Query(
    default=False, description="Strip fields this integration's PMS does not support"
)


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["writes"])
    current_account = account_dependency(ctx)
    json_body = json_body_dependency(ctx)

    @router.post(
        "/v1/{model}/",
        status_code=202,
        response_model=WriteAccepted,
        responses=ERRORS,
        openapi_extra=BODY_DOC,
        summary="Create a record in the integration's PMS (asynchronous)",
    )
    def create(
        model: str,
        ignore_unknown_fields: bool = IGNORE_UNKNOWN,
        body: Any = Depends(json_body),
        account_id: str = Depends(current_account),
    ) -> WriteAccepted:
        accepted = ctx.writes.submit(
            account_id, model, body, ignore_unknown_fields=ignore_unknown_fields
        )
        return WriteAccepted(job_id=accepted.job_id, data=accepted.data)

    @router.put(
        "/v1/{model}/{record_id}",
        status_code=202,
        response_model=WriteAccepted,
        responses=ERRORS,
        openapi_extra=BODY_DOC,
        summary="Update a record in the integration's PMS (asynchronous)",
    )
    def update(
        model: str,
        record_id: str,
        ignore_unknown_fields: bool = IGNORE_UNKNOWN,
        body: Any = Depends(json_body),
        account_id: str = Depends(current_account),
    ) -> WriteAccepted:
        accepted = ctx.writes.submit(
            account_id,
            model,
            body,
            record_id=record_id,
            ignore_unknown_fields=ignore_unknown_fields,
        )
        return WriteAccepted(job_id=accepted.job_id, data=accepted.data)

    return router

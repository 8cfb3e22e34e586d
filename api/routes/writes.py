"""Generic write endpoints: `POST /v1/{model}/`, `PUT /v1/{model}/{id}`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from pmsq.api.context import ApiContext
from pmsq.api.routes.deps import account_dependency, json_body_dependency
from pmsq.api.services.idempotency import IdempotentRequest, Replay, fingerprint
from pmsq.api.services.writes import AcceptedWrite
from pmsq.models.schemas import ErrorResponse, WriteAccepted

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 422)
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
                    "email_1": "ada@example.com",
                },
            }
        },
    }
}
IGNORE_UNKNOWN = Query(
    default=False, description="Strip fields this integration's PMS does not support"
)


IDEMPOTENCY_KEY = Header(
    default=None,
    alias="Idempotency-Key",
    description="Same key and body within 24 h replays the first answer; another body is 422",
)


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["writes"])
    current_account = account_dependency(ctx)
    json_body = json_body_dependency(ctx)

    def answer(
        request: Request, key: str | None, body: Any, submit: Callable[..., AcceptedWrite | Replay]
    ) -> JSONResponse:
        """Submits the write (once per Idempotency-Key, when one is given) and answers it."""
        idempotency = None
        if key is not None:
            sha = fingerprint(request.method, request.url.path, request.url.query, body)
            idempotency = IdempotentRequest(key, sha)
        result = submit(idempotency=idempotency)
        if isinstance(result, Replay):
            return JSONResponse(
                result.body, status_code=result.status, headers={"Idempotent-Replayed": "true"}
            )
        # The answer was built (as a WriteAccepted) when the write was accepted; sending it
        # as it is spares FastAPI validating and serializing it again for the response model.
        answer = result.answer()
        return JSONResponse(answer.body, status_code=answer.status)

    @router.post(
        "/v1/{model}/",
        status_code=200,
        response_model=WriteAccepted,
        responses=ERRORS,
        openapi_extra=BODY_DOC,
        summary="Create a record in the integration's PMS (asynchronous)",
    )
    def create(
        request: Request,
        model: str,
        ignore_unknown_fields: bool = IGNORE_UNKNOWN,
        idempotency_key: str | None = IDEMPOTENCY_KEY,
        body: Any = Depends(json_body),
        account_id: str = Depends(current_account),
    ) -> Any:
        submit = partial(
            ctx.writes.submit, account_id, model, body, ignore_unknown_fields=ignore_unknown_fields
        )
        return answer(request, idempotency_key, body, submit)

    @router.put(
        "/v1/{model}/{record_id}",
        status_code=200,
        response_model=WriteAccepted,
        responses=ERRORS,
        openapi_extra=BODY_DOC,
        summary="Update a record in the integration's PMS (asynchronous)",
    )
    def update(
        request: Request,
        model: str,
        record_id: str,
        ignore_unknown_fields: bool = IGNORE_UNKNOWN,
        idempotency_key: str | None = IDEMPOTENCY_KEY,
        body: Any = Depends(json_body),
        account_id: str = Depends(current_account),
    ) -> Any:
        submit = partial(
            ctx.writes.submit,
            account_id,
            model,
            body,
            record_id=record_id,
            ignore_unknown_fields=ignore_unknown_fields,
        )
        return answer(request, idempotency_key, body, submit)

    return router

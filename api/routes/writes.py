"""Generic write endpoints: `POST /v1/{model}/`, `PUT /v1/{model}/{record_id}`.

The API's busiest endpoints read their request themselves (`RequestRoute`) rather than have
FastAPI solve parameters and dependencies for every write: the body (on the event loop), then
in one worker thread the caller's token, `ignore_unknown_fields` and `Idempotency-Key`, in
the order FastAPI took them and with the same answers when one is missing or invalid.
`parameters` documents them in the OpenAPI document as FastAPI would document declared
parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from pmsq.api.context import ApiContext
from pmsq.api.routes.deps import read_json_body
from pmsq.api.services.idempotency import IdempotentRequest, Replay, fingerprint
from pmsq.models.schemas import ErrorResponse, WriteAccepted
from pmsq.tracing import tracing_on

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
IGNORE_UNKNOWN = "ignore_unknown_fields"
IGNORE_UNKNOWN_DOC = "Strip fields this integration's PMS does not support"
IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_KEY_DOC = "Same key and body within 24 h replays the first answer; another body is 422"
_FLAG = TypeAdapter(bool)


def parameters(*path_names: str) -> list[dict[str, Any]]:
    """The OpenAPI parameters of a write endpoint whose path has `path_names`."""
    optional_text = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    return [
        *(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "title": name.replace("_", " ").title()},
            }
            for name in path_names
        ),
        {
            "name": IGNORE_UNKNOWN,
            "in": "query",
            "required": False,
            "schema": {
                "type": "boolean",
                "description": IGNORE_UNKNOWN_DOC,
                "default": False,
                "title": "Ignore Unknown Fields",
            },
            "description": IGNORE_UNKNOWN_DOC,
        },
        {
            "name": IDEMPOTENCY_KEY,
            "in": "header",
            "required": False,
            "schema": {
                **optional_text,
                "description": IDEMPOTENCY_KEY_DOC,
                "title": IDEMPOTENCY_KEY,
            },
            "description": IDEMPOTENCY_KEY_DOC,
        },
        {
            "name": "authorization",
            "in": "header",
            "required": False,
            "schema": {**optional_text, "title": "Authorization"},
        },
    ]


def ignore_unknown_fields(request: Request) -> bool:
    """The `ignore_unknown_fields` query flag (false when absent), read as FastAPI reads a
    `bool` query parameter: an invalid value is a RequestValidationError naming it."""
    value = request.query_params.get(IGNORE_UNKNOWN)
    if value is None:
        return False
    try:
        return _FLAG.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {**error, "loc": ("query", IGNORE_UNKNOWN, *error["loc"])}
                for error in exc.errors(include_url=False)
            ]
        ) from None


class RequestRoute(APIRoute):
    """A route whose endpoint takes the `Request` alone and returns its `Response`: FastAPI
    has no parameter, body or dependency to solve for it, and nothing to serialize, so the
    endpoint is called as it is (FastAPI's handler would still solve the empty dependency
    tree and parse the query and cookies on every request). With tracing on, FastAPI's own
    handler runs it, for the `fastapi.endpoint` span that carries the write's ids. The
    OpenAPI document is built from the route's declaration as for any route. An endpoint
    declaring anything else is refused when the route is made: it would not be given it."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        dependant = self.dependant
        declared = (
            dependant.path_params,
            dependant.query_params,
            dependant.header_params,
            dependant.cookie_params,
            dependant.body_params,
            dependant.dependencies,
        )
        if any(declared) or dependant.request_param_name is None:
            raise TypeError(f"{path}: a RequestRoute's endpoint takes the Request alone")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        traced = super().get_route_handler()

        async def handler(request: Request) -> Response:
            return await (traced(request) if tracing_on() else endpoint(request))

        return handler


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["writes"], route_class=RequestRoute)
    accounts, writes = ctx.accounts, ctx.writes
    limit = ctx.settings.max_body_bytes

    def accept(request: Request, body: Any, record_id: str | None) -> JSONResponse:
        """Submits the write (once per Idempotency-Key, when one is given) and answers it.
        Runs in a worker thread: the token is read from the database unless seen lately."""
        account_id = accounts.account_for(request.headers.get("authorization"))
        ignore_unknown = ignore_unknown_fields(request)
        key = request.headers.get(IDEMPOTENCY_KEY)
        idempotency = None
        if key is not None:
            sha = fingerprint(request.method, request.url.path, request.url.query, body)
            idempotency = IdempotentRequest(key, sha)
        result = writes.submit(
            account_id,
            request.path_params["model"],
            body,
            record_id=record_id,
            ignore_unknown_fields=ignore_unknown,
            idempotency=idempotency,
        )
        if isinstance(result, Replay):
            return JSONResponse(
                result.body, status_code=result.status, headers={"Idempotent-Replayed": "true"}
            )
        # Already a WriteAccepted's JSON: FastAPI neither validates nor serializes it again.
        answer = result.answer()
        return JSONResponse(answer.body, status_code=answer.status)

    @router.post(
        "/v1/{model}/",
        status_code=200,
        response_model=WriteAccepted,
        responses=ERRORS,
        openapi_extra={**BODY_DOC, "parameters": parameters("model")},
        summary="Create a record in the integration's PMS (asynchronous)",
    )
    async def create(request: Request) -> JSONResponse:
        body = await read_json_body(request, limit)
        return await run_in_threadpool(accept, request, body, None)

    @router.put(
        "/v1/{model}/{record_id}",
        status_code=200,
        response_model=WriteAccepted,
        responses=ERRORS,
        openapi_extra={**BODY_DOC, "parameters": parameters("model", "record_id")},
        summary="Update a record in the integration's PMS (asynchronous)",
    )
    async def update(request: Request) -> JSONResponse:
        body = await read_json_body(request, limit)
        return await run_in_threadpool(accept, request, body, request.path_params["record_id"])

    return router

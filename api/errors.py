"""The one place HTTP maps pmsq's errors to status codes and the error body shape.

The body is Propexo's `{"error": {"code", "message", "details"}}` with `details` an object;
pmsq's list of `{"field", "reason"}` entries is its `fields` member."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pmsq.errors import (
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    PayloadTooLarge,
    PmsqError,
    Unauthorized,
    ValidationFailed,
)

STATUS_BY_ERROR: list[tuple[type[PmsqError], int]] = [
    (ValidationFailed, 400),
    (Unauthorized, 401),
    (NotFound, 404),
    (Conflict, 409),
    (IdempotencyKeyReused, 422),
    (PayloadTooLarge, 413),
]


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": {"fields": details or []}}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PmsqError)
    async def _pmsq_error(_request: Request, exc: PmsqError) -> JSONResponse:
        status = next((code for cls, code in STATUS_BY_ERROR if isinstance(exc, cls)), 500)
        return error_response(status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": _field_name(err.get("loc", ())), "reason": str(err.get("msg", "invalid"))}
            for err in exc.errors()
        ]
        message = "invalid request: " + "; ".join(f"{d['field']}: {d['reason']}" for d in details)
        return error_response(400, "validation_error", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))


def _field_name(loc: Any) -> str:
    # The first element says where the value came from; a field may well be named "header".
    where = ("body", "query", "path", "header")
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in where else loc)]
    return ".".join(parts) or "body"


def document_errors_as_served(app: FastAPI) -> None:
    """Make the OpenAPI document promise the errors the app really sends.

    FastAPI documents a 422 `HTTPValidationError` on every operation with inputs, but
    `install_error_handlers` answers invalid requests with a 400 `ErrorResponse`.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                default_422 = responses.get("422", {})
                if "HTTPValidationError" in str(default_422):
                    del responses["422"]
                    responses.setdefault(
                        "400",
                        {
                            "description": "Invalid request",
                            "content": {"application/json": {"schema": error_ref}},
                        },
                    )
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

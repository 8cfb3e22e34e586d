"""Assembly of the sandbox PMS app, its error format, and the uvicorn entry point."""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pmsq.pms.sandbox.buildium import BuildiumService, build_buildium_router
from pmsq.pms.sandbox.control_routes import build_control_router
from pmsq.pms.sandbox.middleware import RecordingMiddleware
from pmsq.pms.sandbox.pms_routes import build_pms_router
from pmsq.pms.sandbox.service import PmsService
from pmsq.pms.sandbox.state import SandboxState

_VALUE_ERROR_PREFIX = "Value error, "


def _describe(error: dict[str, Any]) -> str:
    """`{"loc": ("body", "kind"), "msg": ...}` -> "kind: ..." so the message names the field."""
    loc = [str(part) for part in error.get("loc", ())]
    where = ".".join(loc[1:]) or (loc[0] if loc else "request")
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix(_VALUE_ERROR_PREFIX)
    return f"{where}: {message}"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    return JSONResponse(
        {
            "error": "; ".join(_describe(e) for e in errors),
            "detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors],
        },
        status_code=422,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(state: SandboxState | None = None) -> FastAPI:
    """A sandbox PMS app with its own, empty memory (or `state`, to inspect it from tests).

    Errors answer `{"error": "<message>"}`, as the generic dialect does, except on the
    Buildium routes of a tenant switched to Buildium (`pmsq.pms.sandbox.buildium`).
    """
    state = state if state is not None else SandboxState()
    app = FastAPI(title="pmsq sandbox PMS")
    app.include_router(build_control_router(state))
    service = PmsService(state.store, state.memory, state.faults)
    buildium = BuildiumService(state.store, service)
    app.include_router(build_buildium_router(buildium, state.dialects))
    app.include_router(build_pms_router(service))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(RecordingMiddleware, recorder=state.recorder, limits=state.limits)
    return app


def run(host: str, port: int) -> None:
    """Serve a fresh sandbox until interrupted; one process, all state in memory."""
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")

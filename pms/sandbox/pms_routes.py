"""HTTP routes of the simulated PMS (`/t/{tenant}/...`); thin: build a `Call`, ask the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from pmsq.pms.sandbox.headers import IDEMPOTENCY_KEY
from pmsq.pms.sandbox.middleware import current_entry
from pmsq.pms.sandbox.paths import MODEL_PATTERN, TENANT_PATTERN
from pmsq.pms.sandbox.service import Call, PmsService, Reply

Tenant = Annotated[str, Path(pattern=TENANT_PATTERN)]
Model = Annotated[str, Path(pattern=MODEL_PATTERN)]
RecordId = Annotated[str, Path(min_length=1)]


def _call(request: Request, tenant: str, model: str) -> Call:
    return Call(
        tenant=tenant,
        method=request.method,
        model=model,
        path=request.url.path,
        idempotency_key=request.headers.get(IDEMPOTENCY_KEY),
        entry=current_entry(request),
    )


class DroppedAnswer(Response):
    """An answer cut off after its status line: the server closes the connection mid-answer.

    ASGI cannot close a connection before the status line, so the client receives the head of
    an answer whose body never comes; HTTP clients report it as a broken connection
    (httpx: `RemoteProtocolError`), never as a response. Its status is meaningless. uvicorn
    logs one "returned without completing response" error per drop: that line is the fault.
    """

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"1"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # No body follows: the server sees an unfinished answer and closes the connection.


def response_of(reply: Reply) -> Response:
    """The HTTP answer of a service's reply (a drop, no body, or JSON)."""
    if reply.drop:
        return DroppedAnswer()
    if reply.body is None:
        return Response(status_code=reply.status, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


def build_pms_router(service: PmsService) -> APIRouter:
    router = APIRouter(prefix="/t/{tenant}", tags=["pms"])

    @router.post("/{model}")
    async def create_record(tenant: Tenant, model: Model, request: Request) -> Response:
        body = await request.body()
        return response_of(await service.create(_call(request, tenant, model), body))

    @router.post("/{model}/validate")
    async def validate_record(tenant: Tenant, model: Model, request: Request) -> Response:
        body = await request.body()
        return response_of(await service.validate(_call(request, tenant, model), body))

    @router.put("/{model}/{record_id}")
    async def update_record(
        tenant: Tenant, model: Model, record_id: RecordId, request: Request
    ) -> Response:
        body = await request.body()
        return response_of(await service.update(_call(request, tenant, model), record_id, body))

    @router.get("/{model}/{record_id}")
    async def read_record(
        tenant: Tenant, model: Model, record_id: RecordId, request: Request
    ) -> Response:
        return response_of(await service.read(_call(request, tenant, model), record_id))

    @router.delete("/{model}/{record_id}")
    async def delete_record(
        tenant: Tenant, model: Model, record_id: RecordId, request: Request
    ) -> Response:
        return response_of(await service.delete(_call(request, tenant, model), record_id))

    @router.get("/{model}")
    async def list_records(tenant: Tenant, model: Model, request: Request) -> Response:
        query = dict(request.query_params)
        return response_of(await service.list(_call(request, tenant, model), query))

    return router

"""What the routers share: the caller's account (a dependency), a size-capped JSON body, and
the refusal of query parameters an endpoint does not take."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from pmsq.api.context import ApiContext
from pmsq.errors import PayloadTooLarge, ValidationFailed


def account_dependency(ctx: ApiContext) -> Callable[..., Awaitable[str]]:
    """The caller's account id. A token seen valid lately is answered on the event loop (no
    worker thread, no database read); any other goes to the token table in a worker thread."""
    accounts = ctx.accounts

    async def current_account(authorization: str | None = Header(default=None)) -> str:
        account_id = accounts.cached(authorization)
        if account_id is None:
            account_id = await run_in_threadpool(accounts.load, authorization)
        return account_id

    return current_account


async def read_json_body(request: Request, limit_bytes: int) -> Any:
    """The request's JSON body, read with a size cap (PayloadTooLarge past `limit_bytes`);
    ValidationFailed naming `body` when it is empty or not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds {limit_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise PayloadTooLarge(f"request body exceeds {limit_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ValidationFailed(
            "the request body is empty; send a JSON object",
            [{"field": "body", "reason": "empty"}],
        )
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            f"the request body is not valid JSON: {exc}",
            [{"field": "body", "reason": "malformed JSON"}],
        ) from None


def refuse_unknown_query(request: Request) -> None:
    """A query parameter the endpoint does not take is a 400 naming it: a filter pmsq cannot
    honour (one of Propexo's it lacks, or a typo) must never be silently ignored."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ValidationFailed(
            f"unknown query parameter(s) {', '.join(unknown)}; this endpoint takes "
            f"{', '.join(sorted(known)) or 'none'}",
            [{"field": name, "reason": "unknown query parameter"} for name in unknown],
        )


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names

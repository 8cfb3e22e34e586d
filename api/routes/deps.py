"""Dependencies shared by the routers: the caller's account, a size-capped JSON body."""

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


def json_body_dependency(ctx: ApiContext) -> Callable[[Request], Awaitable[Any]]:
    """Reads the body with a size cap, then parses it, naming the problem if it is not JSON."""
    limit = ctx.settings.max_body_bytes

    async def json_body(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
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

    return json_body


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

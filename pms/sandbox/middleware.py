"""ASGI middleware that records every `/t/` request and adds advertised rate-limit headers.

It is plain ASGI rather than Starlette's `BaseHTTPMiddleware` so that it sees the exact moment
the answer's first byte is handed to the server, and so that a request whose client vanished,
or whose handler failed or was cancelled, is still completed in the log by a `finally`.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pmsq.pms.sandbox.headers import IDEMPOTENCY_KEY
from pmsq.pms.sandbox.limits import TenantLimits
from pmsq.pms.sandbox.paths import parse_pms_path
from pmsq.pms.sandbox.recorder import Recorder, RequestRecord

#: Key of the request's log entry in the ASGI scope's per-request `state`.
_ENTRY_STATE_KEY = "sandbox_request"
#: Methods that write; their answers carry rate-limit headers when a limit is advertised.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Status recorded when no answer was ever produced (nginx's "client closed request").
NO_ANSWER_STATUS = 499
#: Status recorded when the application raised; the server answers 500 itself.
CRASH_STATUS = 500


def current_entry(request: Request) -> RequestRecord:
    """The log entry of a `/t/` request, for handlers to mark `applied` / `replayed` / ids."""
    entry = request.scope["state"][_ENTRY_STATE_KEY]
    assert isinstance(entry, RequestRecord)
    return entry


class RecordingMiddleware:
    def __init__(self, app: ASGIApp, recorder: Recorder, limits: TenantLimits) -> None:
        self.app = app
        self.recorder = recorder
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started_at = time.time()
        pms_path = parse_pms_path(scope["path"]) if scope["type"] == "http" else None
        if pms_path is None:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        entry = self.recorder.start(
            tenant=pms_path.tenant,
            method=method,
            path=scope["path"],
            model=pms_path.model,
            idempotency_key=Request(scope).headers.get(IDEMPOTENCY_KEY),
            started_at=started_at,
            client=scope["client"][0] if scope.get("client") else None,
        )
        scope.setdefault("state", {})[_ENTRY_STATE_KEY] = entry
        extra_headers = (
            self.limits.note_write(pms_path.tenant, started_at) if method in WRITE_METHODS else []
        )

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                if extra_headers:
                    encoded = [(k.lower().encode(), v.encode()) for k, v in extra_headers]
                    message = {**message, "headers": [*message.get("headers", []), *encoded]}
                entry.ended_at = time.time()
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except Exception:
            if entry.status is None:
                entry.status = CRASH_STATUS
            raise
        finally:
            if entry.status is None or entry.dropped:
                entry.status = NO_ANSWER_STATUS
            if entry.ended_at is None:
                entry.ended_at = time.time()

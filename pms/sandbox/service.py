"""What the simulated PMS does with a request: faults first, then replay or apply, then latency.

Order of decisions for every `/t/` request, and why:

1. A matching `status` or `reset` fault applies nothing (the PMS was unavailable): it answers
   its status, or drops the connection, after its `latency_ms` if any.
2. A keyed POST/PUT whose key already got a 2xx is replayed verbatim, store untouched.
3. Otherwise the operation runs against the store; a keyed 2xx answer is remembered *now*, so a
   client that times out during an injected latency and retries gets the replay, not a second
   write.
4. A matching fault's `latency_ms` then delays the answer (the write has already happened).
5. An `apply_then_status` fault then answers its status instead of the result, and an
   `apply_then_reset` fault drops the connection: the write happened, the answer is lost.

Steps 2-3 contain no `await`, so on the single event loop they are atomic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pmsq.pms.sandbox.errors import PayloadRejected, RecordNotFound
from pmsq.pms.sandbox.faults import APPLYING_KINDS, RESET_KINDS, STATUS_KINDS, FaultBook, FaultRule
from pmsq.pms.sandbox.headers import IDEMPOTENT_REPLAYED, RETRY_AFTER, format_header_number
from pmsq.pms.sandbox.recorder import RequestRecord
from pmsq.pms.sandbox.store import IdempotencyMemory, RememberedAnswer, Store
from pmsq.pms.sandbox.validation import check_create, check_fields, parse_body

#: Query parameter of a list: only records created at or after this ISO 8601 instant.
CREATED_AFTER_PARAM = "created_after"
#: Query parameters of a list that page or narrow by creation time rather than filter a field.
PAGING_PARAMS = frozenset({"page", "page_size", CREATED_AFTER_PARAM})
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class Reply:
    """An answer to send; `body` None means no body (204); `drop` sends none at all."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Drop the connection instead of answering (an injected reset).
    drop: bool = False


@dataclass(frozen=True)
class Outcome:
    """What an operation did: its reply, and whether/which record it changed."""

    reply: Reply
    record_id: str | None = None
    applied: bool = False


@dataclass(frozen=True)
class Call:
    """The request being answered, and its log entry to mark with the outcome."""

    tenant: str
    method: str
    model: str
    path: str
    idempotency_key: str | None
    entry: RequestRecord


def _fault_reply(rule: FaultRule, error_body: Callable[[str], Any] | None = None) -> Reply:
    status = rule.spec.status or 500
    headers = {}
    if status == 429 and rule.spec.retry_after_s is not None:
        headers[RETRY_AFTER] = format_header_number(rule.spec.retry_after_s)
    body = error_body(rule.error_message) if error_body else {"error": rule.error_message}
    return Reply(status, body, headers)


def _positive_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise PayloadRejected(f"{name} must be a positive integer, got '{raw}'")
    return int(raw)


def _instant_s(query: Mapping[str, str], name: str) -> float | None:
    """An ISO 8601 instant with its offset, as epoch seconds; None when absent."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        instant = datetime.fromisoformat(raw)
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise PayloadRejected(f"{name} must be an ISO 8601 time with an offset, got '{raw}'")
    return instant.timestamp()


class PmsService:
    """The PMS dialect's operations over a store, idempotency memory and fault rules."""

    def __init__(self, store: Store, memory: IdempotencyMemory, faults: FaultBook) -> None:
        self._store = store
        self._memory = memory
        self._faults = faults

    async def create(self, call: Call, raw_body: bytes) -> Reply:
        def operation() -> Outcome:
            fields = parse_body(raw_body)
            check_create(call.model, fields, self._applicant_checker(call.tenant))
            record = self._store.create(call.tenant, call.model, fields)
            return Outcome(Reply(201, record), record_id=record["id"], applied=True)

        return await self.run(call, operation, replayable=True)

    async def validate(self, call: Call, raw_body: bytes) -> Reply:
        """Runs the POST rules without storing. Not replayable: a connector may validate and
        then create under one idempotency key, and the create must not get `{"valid": true}`."""

        def operation() -> Outcome:
            fields = parse_body(raw_body)
            check_create(call.model, fields, self._applicant_checker(call.tenant))
            return Outcome(Reply(200, {"valid": True}))

        return await self.run(call, operation, replayable=False)

    async def update(self, call: Call, record_id: str, raw_body: bytes) -> Reply:
        def operation() -> Outcome:
            fields = parse_body(raw_body)
            if not self._store.exists(call.tenant, call.model, record_id):
                raise RecordNotFound(f"{call.model}/{record_id} not found")
            check_fields(fields)
            record = self._store.update(call.tenant, call.model, record_id, fields)
            return Outcome(Reply(200, record), record_id=record_id, applied=True)

        return await self.run(call, operation, replayable=True)

    async def delete(self, call: Call, record_id: str) -> Reply:
        def operation() -> Outcome:
            self._store.delete(call.tenant, call.model, record_id)
            return Outcome(Reply(204), record_id=record_id, applied=True)

        return await self.run(call, operation, replayable=False)

    async def read(self, call: Call, record_id: str) -> Reply:
        def operation() -> Outcome:
            return Outcome(Reply(200, self._store.get(call.tenant, call.model, record_id)))

        return await self.run(call, operation, replayable=False)

    async def list(self, call: Call, query: Mapping[str, str]) -> Reply:
        """One page of records in creation order; `created_after` keeps those the PMS created at
        or after that instant (its own clock); other query parameters filter by equality."""

        def operation() -> Outcome:
            page = _positive_int(query, "page", 1)
            page_size = _positive_int(query, "page_size", DEFAULT_PAGE_SIZE)
            created_after_s = _instant_s(query, CREATED_AFTER_PARAM)
            filters = {k: v for k, v in query.items() if k not in PAGING_PARAMS}
            found = self._store.find(call.tenant, call.model, filters, created_after_s)
            start = (page - 1) * page_size
            body = {
                "results": found[start : start + page_size],
                "page": page,
                "page_size": page_size,
                "has_more": len(found) > start + page_size,
            }
            return Outcome(Reply(200, body))

        return await self.run(call, operation, replayable=False)

    async def run(
        self,
        call: Call,
        operation: Callable[[], Outcome],
        *,
        replayable: bool,
        error_body: Callable[[str], Any] | None = None,
    ) -> Reply:
        """`operation` under the tenant's fault rules (and, when `replayable`, its idempotency
        memory). `error_body` shapes an injected error's body from its message, for a dialect
        whose errors are not `{"error": ...}`."""
        rule = self._faults.take(call.tenant, call.method, call.model, call.path)
        if rule is None:
            return self._answer(call, operation, replayable=replayable)
        kind = rule.spec.kind
        reply = (
            self._answer(call, operation, replayable=replayable) if kind in APPLYING_KINDS else None
        )
        if rule.spec.latency_ms:
            await asyncio.sleep(rule.spec.latency_ms / 1000)
        if kind in RESET_KINDS:
            return self._drop(call)
        if kind in STATUS_KINDS or reply is None:
            return _fault_reply(rule, error_body)
        return reply

    @staticmethod
    def _drop(call: Call) -> Reply:
        call.entry.dropped = True
        return Reply(0, drop=True)

    def _answer(self, call: Call, operation: Callable[[], Outcome], *, replayable: bool) -> Reply:
        """Replay or run `operation`, marking the log entry. Must never `await` (see module)."""
        key = call.idempotency_key if replayable else None
        if key is not None:
            remembered = self._memory.recall(call.tenant, key)
            if remembered is not None:
                call.entry.replayed = True
                call.entry.record_id = remembered.record_id
                return Reply(remembered.status, remembered.body, {IDEMPOTENT_REPLAYED: "true"})
        try:
            outcome = operation()
        except RecordNotFound as exc:
            return Reply(404, {"error": exc.message})
        except PayloadRejected as exc:
            return Reply(422, {"error": exc.message})
        call.entry.applied = outcome.applied
        call.entry.record_id = outcome.record_id
        if key is not None:
            answer = RememberedAnswer(outcome.reply.status, outcome.reply.body, outcome.record_id)
            self._memory.remember(call.tenant, key, answer)
        return outcome.reply

    def _applicant_checker(self, tenant: str) -> Callable[[str], bool]:
        return lambda applicant_id: self._store.exists(tenant, "applicants", applicant_id)

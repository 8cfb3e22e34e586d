"""Client Idempotency-Key handling for writes (Stripe's and Propexo's customers' expectation).

The key, the write's root job and the answer commit in one transaction (`WriteService.submit`
calls `lookup` and `store` inside it), so a key exists exactly when its write does: a crash or
an error before the commit leaves neither, and once committed the answer replays even if
putting the job in its backlog fails afterwards. A repeat with the same request replays the
stored answer; with another request it is refused (422). Two concurrent first requests race
on the (account, key) unique constraint: the loser's insert fails (on PostgreSQL it waits for
the winner's commit) and it replays the winner's answer instead.

A key lives `ttl_s` (24 h by default): a repeat after that is a new write, and the retention
purge deletes the record. Rows without an answer were reserved by the two-phase protocol of
earlier versions: one is "in flight" (409) for `IN_FLIGHT_RELEASE_S`, then released, so a
crash between reserving and answering no longer blocks its key for good.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select

from pmsq.errors import Conflict, IdempotencyKeyReused, ValidationFailed
from pmsq.models.idempotency import IdempotencyRecord

MAX_KEY_LENGTH = 255
#: A record without an answer (left by an earlier version's reserve-then-answer protocol) is
#: in flight this long, then taken over by the next request with its key.
IN_FLIGHT_RELEASE_S = 60.0

_records = cast(Table, IdempotencyRecord.__table__)
# Built once: a write with a key runs them in its transaction.
_LOOKUP = select(
    _records.c.id,
    _records.c.request_sha256,
    _records.c.response_status,
    _records.c.response_body,
    _records.c.created_at,
).where(_records.c.account_id == bindparam("account_id"), _records.c.key == bindparam("key"))
_DELETE = delete(_records).where(_records.c.id == bindparam("record_id"))
_STORE = insert(_records)


@dataclass(frozen=True)
class IdempotentRequest:
    """An Idempotency-Key and the fingerprint of the request that carries it."""

    key: str
    request_sha256: str

    def __post_init__(self) -> None:
        if not self.key or len(self.key) > MAX_KEY_LENGTH:
            raise ValidationFailed(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                [{"field": "Idempotency-Key", "reason": "empty or too long"}],
            )


@dataclass(frozen=True)
class Replay:
    """The stored first answer to a key, to be sent again as it was."""

    status: int
    body: dict[str, Any]


def fingerprint(method: str, path: str, query: str, body: Any) -> str:
    canonical = json.dumps([method, path, query, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    """Looks up and stores keys inside the caller's transaction; never commits itself."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = timedelta(seconds=ttl_s)
        self._in_flight = timedelta(seconds=IN_FLIGHT_RELEASE_S)

    def lookup(
        self, connection: Connection, account_id: str, request: IdempotentRequest, now: datetime
    ) -> Replay | None:
        """The stored answer when `request` repeats a live key; None when the key is free.

        An expired record, or an unanswered one older than the in-flight bound, is deleted
        here so that the caller's `store` can take the key. Raises IdempotencyKeyReused (the
        key came with another request) or Conflict (its first request is still in flight).
        """
        record = connection.execute(
            _LOOKUP, {"account_id": account_id, "key": request.key}
        ).one_or_none()
        if record is None:
            return None
        answered = record.response_status is not None and record.response_body is not None
        if record.created_at <= now - self._ttl or (
            not answered and record.created_at <= now - self._in_flight
        ):
            # By id and without a row-count check: a concurrent purge or repeat may have
            # deleted it already, which is just as good.
            connection.execute(_DELETE, {"record_id": record.id})
            return None
        if record.request_sha256 != request.request_sha256:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request",
                [{"field": "Idempotency-Key", "reason": "reused with another body"}],
            )
        if record.response_status is None or record.response_body is None:
            raise Conflict(
                "a request with this Idempotency-Key is still being processed",
                [{"field": "Idempotency-Key", "reason": "first request in flight"}],
            )
        return Replay(record.response_status, record.response_body)

    def store(
        self,
        connection: Connection,
        account_id: str,
        request: IdempotentRequest,
        answer: Replay,
        now: datetime,
    ) -> None:
        """Insert the key with its answer in the caller's transaction.

        The unique (account, key) constraint fails the insert (IntegrityError) if a
        concurrent request stored the key first (on PostgreSQL once that request commits);
        the caller then looks it up again.
        """
        connection.execute(
            _STORE,
            {
                "account_id": account_id,
                "key": request.key,
                "request_sha256": request.request_sha256,
                "response_status": answer.status,
                "response_body": answer.body,
                "created_at": now,
            },
        )

"""Client Idempotency-Key handling for writes (Stripe's and Propexo's customers' expectation).

Two phases: `begin` reserves the key (a unique row) before the write is processed, `complete`
stores the answer. A repeat with the same body replays the stored answer; with another body it
is refused (422); while the first is still being processed it is refused (409). A write that
fails validation releases the key, so the client can fix the body and reuse it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.idempotency import IdempotencyRecord
from pmsq.errors import Conflict, IdempotencyKeyReused, ValidationFailed

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, Any]


def fingerprint(method: str, path: str, query: str, body: Any) -> str:
    canonical = json.dumps([method, path, query, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyService:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    def begin(self, account_id: str, key: str, request_sha256: str) -> Replay | None:
        """Reserve `key`; returns the stored answer when this is a replay."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                [{"field": "Idempotency-Key", "reason": "empty or too long"}],
            )
        try:
            with self._session_factory.begin() as session:
                session.add(
                    IdempotencyRecord(account_id=account_id, key=key, request_sha256=request_sha256)
                )
            return None
        except IntegrityError:
            pass
        with self._session_factory() as session:
            record = session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.account_id == account_id, IdempotencyRecord.key == key
                )
            ).one()
            if record.request_sha256 != request_sha256:
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

    def complete(self, account_id: str, key: str, status: int, body: dict[str, Any]) -> None:
        with self._session_factory.begin() as session:
            record = session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.account_id == account_id, IdempotencyRecord.key == key
                )
            ).one()
            record.response_status = status
            record.response_body = body

    def abandon(self, account_id: str, key: str) -> None:
        with self._session_factory.begin() as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.account_id == account_id,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.response_status.is_(None),
                )
            )

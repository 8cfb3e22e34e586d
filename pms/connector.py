"""The connector interface: how a job's step becomes PMS calls, and what comes back.

A connector performs one step with as many HTTP exchanges as it needs and hands each one to
the caller's `log` callback as it completes, so the job log holds every request even when a
later one fails. It never touches the job store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Step:
    """One job's work as the connector sees it."""

    model: str
    action: str
    target_id: str | None
    payload: dict[str, Any]
    #: Stable across attempts and redeliveries of the same job.
    idempotency_key: str
    #: An earlier attempt may have reached the PMS and applied (a 5xx, a connection broken or
    #: a timeout after the request was sent, a worker lost during a request).
    outcome_unknown: bool = False
    #: When the write was accepted (timezone-aware), before any attempt was sent: a record the
    #: PMS created earlier cannot be this step's. None when unknown.
    accepted_at: datetime | None = None


@dataclass(frozen=True)
class ChildSpec:
    """A job to spawn once the parent step has succeeded."""

    model: str
    action: str
    target_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class StepResult:
    created_record_id: str | None = None
    record: dict[str, Any] | None = None


@dataclass
class Exchange:
    """One HTTP request and its response (or error), already redacted."""

    method: str
    url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: str | None = None
    response_status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str | None = None
    duration_ms: float = 0.0
    error: str | None = None


ExchangeLog = Callable[[Exchange], None]


class Connector(Protocol):
    def execute(self, step: Step, log: ExchangeLog) -> StepResult:
        """Perform `step` at the PMS.

        Raises `PmsThrottled` on a 429, `PmsError(retryable=True)` on 5xx, timeouts and
        connection failures, `PmsError(retryable=False)` on validation errors, with the PMS's
        own message.
        """
        ...

    def list_page(
        self, model: str, page: int, page_size: int, log: ExchangeLog
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page (1-based) of the model's records at the PMS, and whether more follow."""
        ...

"""The HTTP connector: speaks the PMS dialect the sandbox implements, for every vendor profile.

Each vendor's quirks (which models, fields and workflows it has; whether it honours
idempotency keys; where it stores an external reference) come from its profile; the wire shape
is shared, which is what lets the sandbox stand in for any vendor in demos and tests.

Outcome known or unknown: a failed POST or PUT raises a `PmsError` whose `outcome_unknown` says
whether the PMS may have applied it. Nothing was sent (a connect error or connect timeout, no
free connection) or the PMS said no (4xx, 429): known. Anything after the request may have
left (a 5xx, a connection broken or a timeout while sending or waiting for the answer):
unknown, so the next attempt replays its `Idempotency-Key` or, for a vendor without one, reads
back before it writes (docs/exactly-once.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from pmsq.errors import DestinationRefused, PmsError, PmsThrottled
from pmsq.pms.connector import Exchange, ExchangeLog, Step, StepResult
from pmsq.pms.profiles import CREATE, UPDATE, VALIDATE_THEN_CREATE, VendorProfile
from pmsq.pms.redact import Redactor
from pmsq.pms.workflow import request_body

#: Retry-After used when a 429 carries none.
DEFAULT_RETRY_AFTER_S = 1.0
#: Longest PMS error text kept in a job's error.
MAX_ERROR_CHARS = 500
#: Methods that write: a failure after one of them was sent leaves its outcome unknown.
WRITE_METHODS = frozenset({"POST", "PUT"})
#: Transport failures raised before any byte of the request left: the PMS saw nothing.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)
#: List parameter of the PMS dialect: records created at or after an ISO 8601 instant.
CREATED_AFTER_PARAM = "created_after"
#: Records a read-back looks at; more matches than this for one write cannot be told apart.
READ_BACK_PAGE_SIZE = 100


class HttpConnector:
    def __init__(
        self,
        *,
        base_url: str,
        credentials: dict[str, Any],
        profile: VendorProfile,
        client: httpx.Client,
        before_request: Callable[[], None] | None = None,
    ) -> None:
        """`before_request` runs before every request: flow control's pacing hook."""
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._profile = profile
        self._client = client
        self._redactor = Redactor.for_credentials(credentials)
        self._before_request = before_request

    def execute(self, step: Step, log: ExchangeLog) -> StepResult:
        body = request_body(self._profile, step)
        url = f"{self._base_url}/{step.model}"
        if step.action == VALIDATE_THEN_CREATE:
            self._send("POST", f"{url}/validate", body, None, log)
            return StepResult()
        if step.action == CREATE:
            if step.outcome_unknown and not self._profile.supports_idempotency_key:
                existing = self._read_back(url, step, body, log)
                if existing is not None:
                    return StepResult(created_record_id=str(existing["id"]), record=existing)
            record = self._send("POST", url, body, step.idempotency_key, log)
            return StepResult(created_record_id=_record_id(record), record=record)
        if step.action == UPDATE:
            if step.target_id is None:
                raise PmsError("UPDATE needs a target record id", retryable=False)
            record = self._send("PUT", f"{url}/{step.target_id}", body, step.idempotency_key, log)
            return StepResult(record=record)
        raise PmsError(f"unknown step action '{step.action}'", retryable=False)

    def list_page(
        self, model: str, page: int, page_size: int, log: ExchangeLog
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the model's records, and whether more pages follow."""
        params = {"page": str(page), "page_size": str(page_size)}
        data = self._send("GET", f"{self._base_url}/{model}", None, None, log, params=params)
        results = data.get("results") or []
        return [r for r in results if isinstance(r, dict)], bool(data.get("has_more"))

    def _read_back(
        self, url: str, step: Step, body: dict[str, Any], log: ExchangeLog
    ) -> dict[str, Any] | None:
        """The record an earlier attempt of this very step created, or None if none did.

        With the profile's `reference_field`, that is the record carrying the step's key
        there. Without one, it is the first record created at or after the write was accepted
        whose every scalar field equals the body's: a record that existed before the write
        is never claimed, so a new write equal to an old record still creates its own. Every
        condition is checked again here, in case the PMS ignores a filter.
        """
        reference = self._profile.reference_field
        if reference is not None:
            wanted: dict[str, Any] = {reference: step.idempotency_key}
            params = {reference: step.idempotency_key}
        elif step.accepted_at is not None:
            wanted = {k: v for k, v in body.items() if isinstance(v, str | int | float)}
            params = {k: _query_value(v) for k, v in wanted.items()}
            params[CREATED_AFTER_PARAM] = _utc(step.accepted_at).isoformat()
        else:
            return None  # nothing tells this write's record from an older equal one
        params["page_size"] = str(READ_BACK_PAGE_SIZE)
        found = self._send("GET", url, None, None, log, params=params)
        results = found.get("results") or []
        return next(
            (
                r
                for r in results
                if isinstance(r, dict)
                and r.get("id") is not None
                and all(r.get(k) == v for k, v in wanted.items())
            ),
            None,
        )

    def _send(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        idempotency_key: str | None,
        log: ExchangeLog,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", **self._auth_headers()}
        if idempotency_key and self._profile.supports_idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        content = json.dumps(body) if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        request = self._client.build_request(
            method, url, headers=headers, content=content, params=params
        )
        exchange = Exchange(
            method=method,
            url=self._redactor.text(str(request.url)) or "",
            request_headers=self._redactor.headers(dict(request.headers)),
            request_body=self._redactor.text(content),
        )
        if self._before_request is not None:
            self._before_request()
        started = time.perf_counter()
        try:
            response = self._client.send(request)
        except DestinationRefused as exc:  # nothing was sent: the log shows why
            exchange.error = exc.message
            raise
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException):
                exchange.error = f"timeout: {type(exc).__name__}"
            else:
                exchange.error = f"transport error: {self._redactor.text(str(exc))}"
            raise _transport_error(method, exc) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            if exchange.error is not None:
                log(exchange)
        exchange.response_status = response.status_code
        exchange.response_headers = self._redactor.headers(dict(response.headers))
        exchange.response_body = self._redactor.text(response.text)
        log(exchange)
        return self._parse(method, response)

    def _parse(self, method: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return {}
            try:
                data = response.json()
            except ValueError:
                error = PmsError(
                    f"PMS answered {status} with a body that is not JSON", retryable=True
                )
                # It did what was asked; the next attempt finds out what that was.
                error.outcome_unknown = method in WRITE_METHODS
                raise error from None
            return data if isinstance(data, dict) else {"results": data}
        message = self._redactor.text(_error_message(response)) or ""
        if status == 429:
            raise PmsThrottled(
                f"PMS throttled the request (429): {message}",
                retryable=True,
                status_code=status,
                retry_after_s=_retry_after_s(response),
            )
        retryable = status >= 500 or status == 408
        error = PmsError(
            f"PMS answered {status}: {message}", retryable=retryable, status_code=status
        )
        # A 5xx may come from a gateway that lost the answer of a write the PMS applied.
        error.outcome_unknown = status >= 500 and method in WRITE_METHODS
        raise error

    def _auth_headers(self) -> dict[str, str]:
        token = self._credentials.get("api_key") or self._credentials.get("token")
        return {"Authorization": f"Bearer {token}"} if token else {}


def _transport_error(method: str, exc: httpx.TransportError) -> PmsError:
    """A retryable error; its outcome is unknown for a write unless nothing was sent."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        error = PmsError(f"PMS request timed out ({name})", retryable=True)
    else:
        error = PmsError(f"PMS unreachable: {name}", retryable=True)
    error.outcome_unknown = method in WRITE_METHODS and not isinstance(exc, NOT_SENT_ERRORS)
    return error


def _utc(moment: datetime) -> datetime:
    """A naive datetime is UTC (as the job store keeps them on SQLite)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _query_value(value: str | int | float) -> str:
    """How a scalar is written in a list filter: strings as they are, numbers as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _record_id(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    return str(value) if value is not None else None


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:MAX_ERROR_CHARS]
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if key in data:
                return str(data[key])[:MAX_ERROR_CHARS]
    return json.dumps(data)[:MAX_ERROR_CHARS]


def _retry_after_s(response: httpx.Response) -> float:
    raw = response.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S

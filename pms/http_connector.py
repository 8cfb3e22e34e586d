"""The HTTP connector: speaks the PMS dialect the sandbox implements, for every vendor profile.

Each vendor's quirks (which models, fields and workflows it has; whether it honours
idempotency keys) come from its profile; the wire shape is shared, which is what lets the
sandbox stand in for any vendor in demos and tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from pms.connector import Exchange, ExchangeLog, Step, StepResult
from pms.profiles import CREATE, UPDATE, VALIDATE_THEN_CREATE, VendorProfile
from pms.redact import Redactor
from pms.workflow import request_body
from pmsq.errors import DestinationRefused, PmsError, PmsThrottled

#: Retry-After used when a 429 carries none.
DEFAULT_RETRY_AFTER_S = 1.0
#: Longest PMS error text kept in a job's error.
MAX_ERROR_CHARS = 500


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
                existing = self._read_back(url, body, log)
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

    def _read_back(self, url: str, body: dict[str, Any], log: ExchangeLog) -> dict[str, Any] | None:
        """A record matching every scalar field of `body`: the earlier attempt's creation."""
        params = {k: str(v) for k, v in body.items() if isinstance(v, str | int | float)}
        found = self._send("GET", url, None, None, log, params=params)
        results = found.get("results") if isinstance(found, dict) else None
        return results[0] if results else None

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
        except httpx.TimeoutException as exc:
            exchange.error = f"timeout: {type(exc).__name__}"
            raise _timeout_error(method, url, exc) from None
        except httpx.TransportError as exc:
            exchange.error = f"transport error: {self._redactor.text(str(exc))}"
            raise PmsError(f"PMS unreachable: {type(exc).__name__}", retryable=True) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            if exchange.error is not None:
                log(exchange)
        exchange.response_status = response.status_code
        exchange.response_headers = self._redactor.headers(dict(response.headers))
        exchange.response_body = self._redactor.text(response.text)
        log(exchange)
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return {}
            data = response.json()
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
        raise PmsError(f"PMS answered {status}: {message}", retryable=retryable, status_code=status)

    def _auth_headers(self) -> dict[str, str]:
        token = self._credentials.get("api_key") or self._credentials.get("token")
        return {"Authorization": f"Bearer {token}"} if token else {}


def _timeout_error(method: str, url: str, exc: Exception) -> PmsError:
    error = PmsError(f"PMS request timed out ({type(exc).__name__})", retryable=True)
    # A write that timed out may have been applied: the next attempt must not write twice.
    error.outcome_unknown = method in {"POST", "PUT"}
    return error


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

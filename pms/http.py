"""The HTTP machinery every PMS connector shares, whatever dialect its vendor speaks.

`PmsHttp.send` is the only way a connector reaches a PMS: it runs flow control's pacing hook
right before each request, captures every exchange (redacted) for the job log, and turns a
transport failure into a `PmsError`. `status_error` and `json_body` turn an answer into the same
errors for every vendor, so the runner's retry, pause and read-back decisions never depend on
which dialect produced them.

Outcome known or unknown: a failed POST or PUT raises a `PmsError` whose `outcome_unknown` says
whether the PMS may have applied it. Nothing was sent (a connect error or connect timeout, no
free connection) or the PMS said no (4xx, 429): known. Anything after the request may have
left (a 5xx, a connection broken or a timeout while sending or waiting for the answer, a 2xx
whose body cannot be read): unknown, so the next attempt replays its `Idempotency-Key` or, for
a vendor without one, reads back before it writes (docs/exactly-once.md).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from pmsq.errors import DestinationRefused, PmsError, PmsThrottled
from pmsq.pms.connector import Exchange, ExchangeLog
from pmsq.pms.redact import Redactor

#: Retry-After used when a 429 carries none.
DEFAULT_RETRY_AFTER_S = 1.0
#: Longest PMS error text kept in a job's error.
MAX_ERROR_CHARS = 500
#: Methods that write: a failure after one of them was sent leaves its outcome unknown.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Transport failures raised before any byte of the request left: the PMS saw nothing.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


class PathUrls:
    """The URLs of paths under one integration's base URL, each parsed once.

    httpx parses a URL given as text on every request (about a third of building one); the
    paths a connector sends to repeat (a model's collection on every create), so an
    integration's jobs share what was parsed, keeping the `MAX_PATHS` most recently used
    (paths with a record id in them mostly do not repeat). A URL httpx cannot parse raises
    `httpx.InvalidURL` here, as it would when sent, and is not kept."""

    #: Parsed URLs kept per integration version; the least recently used is dropped first.
    MAX_PATHS = 64

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.of = functools.lru_cache(maxsize=self.MAX_PATHS)(self._parse)

    def _parse(self, path: str) -> httpx.URL:
        """The URL of `path` (starting with "/") under the base URL."""
        return httpx.URL(f"{self.base_url}{path}")


class PmsHttp:
    """Sends a connector's requests: paced, captured, redacted, errors mapped."""

    def __init__(
        self,
        client: httpx.Client,
        redactor: Redactor,
        before_request: Callable[[], None] | None = None,
    ) -> None:
        """`client` is the outbound client (`pmsq.outbound.outbound_client`) outside tests;
        `redactor` scrubs the integration's credentials from every captured exchange and
        error; `before_request` is flow control's pacing hook, run before every request (it
        may raise, and then nothing is sent)."""
        self._client = client
        self.redactor = redactor
        self._before_request = before_request

    def send(
        self,
        method: str,
        url: str | httpx.URL,
        log: ExchangeLog,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        """Send one request and return the PMS's answer, whatever its status.

        `body`, when not None, is sent as JSON. The exchange goes to `log` once it is over,
        redacted, failed or not. Raises `DestinationRefused` when the outbound policy refuses
        the address (nothing sent), and a retryable `PmsError` on a transport failure, its
        outcome unknown for a write unless nothing was sent.
        """
        all_headers = {"Accept": "application/json", **(headers or {})}
        content = json.dumps(body) if body is not None else None
        if content is not None:
            all_headers.setdefault("Content-Type", "application/json")
        request = self._client.build_request(
            method, url, headers=all_headers, content=content, params=params
        )
        exchange = Exchange(
            method=method,
            url=self.redactor.text(str(request.url)) or "",
            request_headers=self.redactor.headers(request.headers),
            request_body=self.redactor.text(content),
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
                exchange.error = f"transport error: {self.redactor.text(str(exc))}"
            raise transport_error(method, exc) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            if exchange.error is not None:
                log(exchange)
        exchange.response_status = response.status_code
        exchange.response_headers = self.redactor.headers(response.headers)
        exchange.response_body = self.redactor.text(body_text(response))
        log(exchange)
        return response


def body_text(response: httpx.Response) -> str:
    """The answer's body as `response.text` decodes it, for the job log.

    httpx looks for a charset by parsing Content-Type into an email message on every answer
    (a tenth of a millisecond here and there); a Content-Type with no parameter at all, as
    a JSON answer's usually is, names none, and the body decodes with the client's default
    encoding: that is done here without the parse. Anything else is left to httpx."""
    content_type = response.headers.get("content-type")
    default = response.default_encoding
    if isinstance(default, str) and (content_type is None or ";" not in content_type):
        return response.content.decode(default or "utf-8", errors="replace")
    return response.text


def transport_error(method: str, exc: httpx.TransportError) -> PmsError:
    """A retryable error; its outcome is unknown for a write unless nothing was sent."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        error = PmsError(f"PMS request timed out ({name})", retryable=True)
    else:
        error = PmsError(f"PMS unreachable: {name}", retryable=True)
    error.outcome_unknown = method in WRITE_METHODS and not isinstance(exc, NOT_SENT_ERRORS)
    return error


def status_error(method: str, response: httpx.Response, message: str) -> PmsError:
    """The error of a non-2xx answer; `message` is the PMS's own text, already redacted.

    A 429 is `PmsThrottled` (the integration pauses for its Retry-After, no attempt burnt);
    5xx and 408 are retryable; any other status is final. A 5xx may come from a gateway that
    lost the answer of a write the PMS applied, so a write's outcome is then unknown.
    """
    status = response.status_code
    if status == 429:
        return PmsThrottled(
            f"PMS throttled the request (429): {message}",
            retryable=True,
            status_code=status,
            retry_after_s=retry_after_s(response),
        )
    retryable = status >= 500 or status == 408
    error = PmsError(f"PMS answered {status}: {message}", retryable=retryable, status_code=status)
    error.outcome_unknown = status >= 500 and method in WRITE_METHODS
    return error


def json_body(method: str, response: httpx.Response) -> Any:
    """The parsed JSON of a 2xx answer; None for an empty one (204).

    A body that is not JSON is a retryable error: the PMS did what was asked, so a write's
    outcome is unknown and the next attempt finds out what that was.
    """
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        error = PmsError(
            f"PMS answered {response.status_code} with a body that is not JSON", retryable=True
        )
        error.outcome_unknown = method in WRITE_METHODS
        raise error from None


def retry_after_s(response: httpx.Response) -> float:
    """The answer's Retry-After in seconds (a number; a date is not honoured)."""
    raw = response.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def truncated(text: str) -> str:
    """PMS text cut to what a job's error keeps."""
    return text[:MAX_ERROR_CHARS]

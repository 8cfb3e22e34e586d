"""A small synchronous client of the pmsq HTTP API, for the `pmsq` command line.

It speaks the admin and write routes (`api/routes/*.py`) and turns every error answer
(`{"error": {"code", "message", "details"}}`) into `ApiError`, and every transport failure into
`ApiUnreachable`, so the command line has one place to report them. The transport is injectable
(`httpx.MockTransport` in unit tests). The token is sent as a bearer header and is never part of
an exception message or a repr.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from pmsq.errors import PmsqError

#: Where the API listens unless `--url` / `PMSQ_API_URL` say otherwise (`pmsq api`'s default).
DEFAULT_API_URL = "http://127.0.0.1:8000"
#: Per-request timeout of the client.
DEFAULT_TIMEOUT_S = 10.0


class ApiError(PmsqError):
    """Raised when the pmsq API answers a request with a non-2xx status.

    `status` is the HTTP status, `code` the API's error code (`http_error` when the body was
    not pmsq's error shape), `details` the fields at fault: `{"field", "reason"}` entries (the
    API's `details.fields`).
    """

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message, details)
        self.status = status
        self.code = code


class ApiUnreachable(PmsqError):
    """Raised when the pmsq API cannot be reached or does not answer in time."""

    code = "api_unreachable"


class PmsqClient:
    """One API base URL and one account's token; use as a context manager to close it."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=timeout_s,
        )

    def __repr__(self) -> str:
        return f"PmsqClient({self.base_url!r})"

    def __enter__(self) -> PmsqClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- integrations --------------------------------------------------------------------------

    def list_integrations(self, *, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """One page: `{"meta": {...}, "results": [integration, ...]}`."""
        return dict(
            self._json("GET", "/v1/admin/integrations/", params={"offset": offset, "limit": limit})
        )

    def create_integration(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The created integration (without its credentials, which the API never returns)."""
        return dict(self._json("POST", "/v1/admin/integrations/", json=spec)["result"])

    # -- writes --------------------------------------------------------------------------------

    def submit_write(
        self,
        model: str,
        body: dict[str, Any],
        *,
        record_id: str | None = None,
        ignore_unknown_fields: bool = False,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """POSTs a create (or PUTs an update when `record_id` is given).

        Returns the API's `{"job_id", "data"}` and whether it was an idempotent replay of an
        earlier submission with the same key.
        """
        params = {"ignore_unknown_fields": "true"} if ignore_unknown_fields else None
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        if record_id is None:
            method, path = "POST", f"/v1/{model}/"
        else:
            method, path = "PUT", f"/v1/{model}/{record_id}"
        response = self._send(method, path, params=params, json=body, headers=headers)
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return dict(response.json()), replayed

    def write_status(self, job_id: str) -> dict[str, Any]:
        """`{"write_status", "errors", "created_record_id"}` of a write (its root job id)."""
        return dict(self._json("GET", f"/v1/admin/write-status/{job_id}"))

    # -- logs ----------------------------------------------------------------------------------

    def job_attempts(self, job_id: str, *, include_all_jobs: bool = True) -> list[dict[str, Any]]:
        """One entry per attempt of the job (and of every job below it), each with its logs."""
        params = {"include_all_jobs": "true" if include_all_jobs else "false"}
        body = self._json("GET", f"/v1/admin/logs/jobs/{job_id}", params=params)
        return list(body["results"])

    def log_data(self, log_id: str) -> dict[str, Any]:
        """The raw request and response of one PMS call, as the API logged it (redacted);
        the API answers with a redirect to a short-lived link, followed here."""
        path = f"/v1/admin/job-logs/{log_id}/data"
        return dict(self._json("GET", path, follow_redirects=True))

    # -- plumbing ------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiUnreachable(
                f"cannot reach the pmsq API at {self.base_url}: {type(exc).__name__}: {exc}"
            ) from None
        if not response.is_success:
            raise _api_error(response)
        return response


def _api_error(response: httpx.Response) -> ApiError:
    """The API's error body as an `ApiError`; a body of another shape keeps its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        details = error.get("details")
        if isinstance(details, dict):
            # Propexo's details object; pmsq lists the fields at fault in its `fields`.
            details = details.get("fields")
        if not isinstance(details, list):
            details = []
        return ApiError(
            response.status_code,
            str(error.get("code") or "http_error"),
            str(error.get("message") or response.reason_phrase),
            [d if isinstance(d, dict) else {"reason": str(d)} for d in details],
        )
    text = response.text.strip()[:500] or response.reason_phrase
    return ApiError(response.status_code, "http_error", text)

"""The HTTP connector: performs a job's step at the PMS, in the vendor's dialect.

What to send for a step is decided here, once for every vendor: a workflow's validation, a
create (read back first when an earlier attempt's outcome is unknown and the vendor has no
idempotency keys), an update (the record read first when the dialect's PMS replaces records
whole), a page of a sync. How each request is spelled and each answer
read is the vendor's dialect (`pmsq.pms.dialect`); pacing, capture, redaction and the error
mapping are `pmsq.pms.http`'s. Each vendor's quirks beyond the wire (which models, fields and
workflows it has; whether it honours idempotency keys; where it stores an external reference)
come from its profile.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from pmsq.errors import PmsError
from pmsq.pms.connector import ExchangeLog, Step, StepResult
from pmsq.pms.dialect import Call, Dialect
from pmsq.pms.http import PathUrls, PmsHttp, truncated
from pmsq.pms.profiles import CREATE, UPDATE, VALIDATE_THEN_CREATE, VendorProfile
from pmsq.pms.workflow import request_body

#: Records a read-back looks at; more matches than this for one write cannot be told apart.
READ_BACK_PAGE_SIZE = 100


class HttpConnector:
    def __init__(
        self,
        *,
        base_url: str | PathUrls,
        profile: VendorProfile,
        dialect: Dialect[Any],
        http: PmsHttp,
    ) -> None:
        """`base_url` is the integration's API root, or the `PathUrls` under it that its
        jobs share."""
        self._urls = base_url if isinstance(base_url, PathUrls) else PathUrls(base_url)
        self._profile = profile
        self._dialect = dialect
        self._http = http

    def execute(self, step: Step, log: ExchangeLog) -> StepResult:
        body = request_body(self._profile, step)
        key = step.idempotency_key if self._profile.supports_idempotency_key else None
        if step.action == VALIDATE_THEN_CREATE:
            call = self._dialect.validate_call(step.model, body)
            self._dialect.record(call.method, self._send(call, log))
            return StepResult()
        if step.action == CREATE:
            if step.outcome_unknown and not self._profile.supports_idempotency_key:
                existing = self._read_back(step, body, log)
                if existing is not None:
                    return StepResult(created_record_id=str(existing["id"]), record=existing)
            record = self._write(self._dialect.create_call(step.model, body, key), log)
            return StepResult(created_record_id=_record_id(record), record=record)
        if step.action == UPDATE:
            if step.target_id is None:
                raise PmsError("UPDATE needs a target record id", retryable=False)
            read = self._dialect.current_call(step.model, step.target_id)
            if read is None:
                call = self._dialect.update_call(step.model, step.target_id, body, key)
            else:
                current = self._dialect.current(read.method, self._send(read, log))
                call = self._dialect.update_call(
                    step.model, step.target_id, body, key, current=current
                )
            return StepResult(record=self._write(call, log))
        raise PmsError(f"unknown step action '{step.action}'", retryable=False)

    def list_page(
        self, model: str, page: int, page_size: int, log: ExchangeLog
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the model's records, and whether more pages follow."""
        call = self._dialect.list_call(model, page, page_size)
        return self._dialect.page(call.method, self._send(call, log))

    def _read_back(
        self, step: Step, body: dict[str, Any], log: ExchangeLog
    ) -> dict[str, Any] | None:
        """The record an earlier attempt of this very step created, or None if none did.

        With the profile's `reference_field`, that is the record carrying the step's key
        there. Without one, it is the first record created at or after the write was accepted
        whose every scalar field equals the body's: a record that existed before the write
        is never claimed, so a new write equal to an old record still creates its own. Every
        condition is checked again here, in case the PMS ignores a filter.
        """
        reference = self._profile.reference_field
        created_after: datetime | None = None
        wanted: dict[str, str | int | float]
        if reference is not None:
            wanted = {reference: step.idempotency_key}
        elif step.accepted_at is not None:
            wanted = {k: v for k, v in body.items() if isinstance(v, str | int | float)}
            created_after = _utc(step.accepted_at)
        else:
            return None  # nothing tells this write's record from an older equal one
        call = self._dialect.read_back_call(step.model, wanted, created_after, READ_BACK_PAGE_SIZE)
        results, _ = self._dialect.page(call.method, self._send(call, log))
        return next(
            (
                r
                for r in results
                if r.get("id") is not None and all(r.get(k) == v for k, v in wanted.items())
            ),
            None,
        )

    def _write(self, call: Call, log: ExchangeLog) -> dict[str, Any]:
        return self._dialect.record(call.method, self._send(call, log))

    def _send(self, call: Call, log: ExchangeLog) -> httpx.Response:
        """The 2xx answer to `call`; any other raises the dialect's (shared) error."""
        response = self._http.send(
            call.method,
            self._urls.of(call.path),
            log,
            headers={**self._dialect.auth_headers(), **call.headers},
            params=call.params,
            body=call.body,
        )
        if 200 <= response.status_code < 300:
            return response
        message = truncated(self._http.redactor.text(self._dialect.error_message(response)) or "")
        raise self._dialect.error(call.method, response, message)


def _utc(moment: datetime) -> datetime:
    """A naive datetime is UTC (as the job store keeps them on SQLite)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _record_id(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    return str(value) if value is not None else None

"""A vendor's dialect: how pmsq's steps are said on that vendor's wire, and how answers read.

The connector (`pmsq.pms.http_connector`) decides what to do for a step (validate, read back
before a re-attempted create, create, update, list a page); the dialect only says what each of
those requests looks like (method, path, query, body, auth headers) and what the answers mean
(the record, a page of records, the PMS's error text). Everything around the request (pacing,
capture, redaction, the 429/5xx/timeout mapping, outcome known or unknown) is shared
(`pmsq.pms.http`), so a new dialect cannot get those wrong.

`SandboxDialect` is the sandbox PMS's generic dialect, which every built-in vendor without a
dialect of its own speaks (`wire_format` "generic"); Buildium speaks its published API
(`pmsq.pms.vendors.buildium`). A vendor with its own wire shape subclasses `Dialect` (or
`GenericDialect`, overriding what differs and saying how it authenticates) and names it in its
`VendorSpec`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator

from pmsq.errors import PmsError
from pmsq.pms.http import json_body, status_error

#: The wire format of `GenericDialect`: the sandbox's own, which no real PMS speaks.
GENERIC_WIRE_FORMAT = "generic"
#: List parameter of the generic dialect: records created at or after an ISO 8601 instant.
CREATED_AFTER_PARAM = "created_after"


class Credentials(BaseModel):
    """Base of every vendor's credentials model.

    Validated when an integration is created or updated (a 400 naming `credentials.<field>`)
    and again by the worker before each job. Errors never carry the input (a secret), and
    `SecretStr` fields keep values out of reprs. Give the model one example under
    `json_schema_extra={"examples": [...]}`: the API documents it and the vendor contract suite
    sends it (with each value replaced by a unique fake secret).
    """

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)


C = TypeVar("C", bound=Credentials)


@dataclass(frozen=True)
class Call:
    """One request a dialect asks for; `path` is relative to the integration's base URL."""

    method: str
    path: str
    params: dict[str, str] | None = None
    #: Sent as JSON when not None.
    body: Any = None
    #: Besides the dialect's auth headers (an Idempotency-Key, say).
    headers: dict[str, str] = field(default_factory=dict)


class Dialect(ABC, Generic[C]):
    """How one vendor's API is spoken. One instance per connector, holding its credentials.

    `credentials` is None for an integration stored without any: no auth is sent then.
    Methods building calls get what the connector decided; methods reading answers get only
    2xx answers (other statuses go to `error_message` and `error`).
    """

    #: The wire format this dialect speaks, as the capabilities answer names it: `generic` is
    #: the sandbox's own shape (`GenericDialect`), anything else a vendor's published API.
    wire_format: ClassVar[str] = GENERIC_WIRE_FORMAT

    def __init__(self, credentials: C | None) -> None:
        self.credentials = credentials

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate every request; the shared capture redacts them."""

    @abstractmethod
    def create_call(self, model: str, body: dict[str, Any], idempotency_key: str | None) -> Call:
        """Create a record. `idempotency_key` is None when the vendor's profile has none."""

    @abstractmethod
    def update_call(
        self,
        model: str,
        record_id: str,
        body: dict[str, Any],
        idempotency_key: str | None,
        current: dict[str, Any] | None = None,
    ) -> Call:
        """Update the record `record_id`. `current` is the record as the PMS answered
        `current_call`, when the dialect asks for one."""

    def current_call(self, model: str, record_id: str) -> Call | None:
        """A read to send before an update, for a PMS whose update replaces the record whole
        (the update then carries what the client left out); None, the default, sends the
        update alone. A failure of this read is a read's: nothing was written."""
        return None

    def current(self, method: str, response: httpx.Response) -> dict[str, Any]:
        """The record a 2xx answer to `current_call` holds, as the PMS spells it."""
        data = json_body(method, response)
        return data if isinstance(data, dict) else {}

    @abstractmethod
    def validate_call(self, model: str, body: dict[str, Any]) -> Call:
        """Ask the PMS to validate a create without applying it (a VALIDATE_THEN_CREATE step)."""

    @abstractmethod
    def list_call(self, model: str, page: int, page_size: int) -> Call:
        """One page (1-based) of the model's records."""

    @abstractmethod
    def read_back_call(
        self,
        model: str,
        wanted: dict[str, str | int | float],
        created_after: datetime | None,
        limit: int,
    ) -> Call:
        """Records whose fields equal `wanted` (created at or after `created_after`, a UTC
        instant, when not None), at most `limit` of them. The connector checks every condition
        again on what comes back, so a PMS that ignores a filter is not believed."""

    @abstractmethod
    def record(self, method: str, response: httpx.Response) -> dict[str, Any]:
        """The record a 2xx answer to a write holds, with its id under `id`; {} when none.

        Raise `pmsq.pms.http.json_body`'s error (outcome unknown for a write) on a body that
        cannot be read, so a re-attempt finds out what the PMS did.
        """

    @abstractmethod
    def page(self, method: str, response: httpx.Response) -> tuple[list[dict[str, Any]], bool]:
        """The records of a 2xx answer to a list, and whether more pages follow."""

    @abstractmethod
    def error_message(self, response: httpx.Response) -> str:
        """The PMS's own explanation of a non-2xx answer (redacted and cut by the caller)."""

    def error(self, method: str, response: httpx.Response, message: str) -> PmsError:
        """The error a non-2xx answer raises. Override only to refine the shared mapping
        (`pmsq.pms.http.status_error`); the vendor contract suite holds every dialect to it."""
        return status_error(method, response, message)


class ApiKeyCredentials(Credentials):
    """A key sent as a bearer token. Integrations stored before this model may name it `token`;
    a Propexo client names it as Propexo's credentials for the vendor do (`apiKey` for Entrata
    and ResMan, `PartnerToken` for Rent Manager).

    Other fields are kept (encrypted, and scrubbed from job logs like the key) but not sent.
    """

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"api_key": "pk_live_0123456789abcdef"}]}
    )

    api_key: SecretStr = Field(
        validation_alias=AliasChoices("api_key", "token", "apiKey", "PartnerToken")
    )

    @field_validator("api_key")
    @classmethod
    def _usable_in_a_header(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not secret or secret != secret.strip() or any(c in secret for c in "\r\n"):
            raise ValueError("must be a non-empty string without surrounding spaces or newlines")
        return value


class GenericDialect(Dialect[C]):
    """The sandbox PMS's wire shape: REST on `/{model}`, JSON bodies, `Idempotency-Key`.

    Lists answer `{"results": [...], "has_more": bool}` and filter on any field by equality;
    errors carry their text under `error`, `message` or `detail`. How requests authenticate
    is left to the subclass (`auth_headers`), since that follows its credentials model.
    """

    def create_call(self, model: str, body: dict[str, Any], idempotency_key: str | None) -> Call:
        return Call("POST", f"/{model}", body=body, headers=_key_header(idempotency_key))

    def update_call(
        self,
        model: str,
        record_id: str,
        body: dict[str, Any],
        idempotency_key: str | None,
        current: dict[str, Any] | None = None,
    ) -> Call:
        return Call("PUT", f"/{model}/{record_id}", body=body, headers=_key_header(idempotency_key))

    def validate_call(self, model: str, body: dict[str, Any]) -> Call:
        return Call("POST", f"/{model}/validate", body=body)

    def list_call(self, model: str, page: int, page_size: int) -> Call:
        return Call("GET", f"/{model}", params={"page": str(page), "page_size": str(page_size)})

    def read_back_call(
        self,
        model: str,
        wanted: dict[str, str | int | float],
        created_after: datetime | None,
        limit: int,
    ) -> Call:
        params = {name: _query_value(value) for name, value in wanted.items()}
        if created_after is not None:
            params[CREATED_AFTER_PARAM] = created_after.astimezone(UTC).isoformat()
        params["page_size"] = str(limit)
        return Call("GET", f"/{model}", params=params)

    def record(self, method: str, response: httpx.Response) -> dict[str, Any]:
        return _object(json_body(method, response))

    def page(self, method: str, response: httpx.Response) -> tuple[list[dict[str, Any]], bool]:
        data = _object(json_body(method, response))
        results = data.get("results") or []
        return [r for r in results if isinstance(r, dict)], bool(data.get("has_more"))

    def error_message(self, response: httpx.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            return response.text
        if isinstance(data, dict):
            for key in ("error", "message", "detail"):
                if key in data:
                    return str(data[key])
        return json.dumps(data)


class SandboxDialect(GenericDialect[ApiKeyCredentials]):
    """The generic wire shape with a bearer key: what the sandbox PMS speaks."""

    def auth_headers(self) -> dict[str, str]:
        if self.credentials is None:
            return {}
        return {"Authorization": f"Bearer {self.credentials.api_key.get_secret_value()}"}


def _key_header(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def _object(data: Any) -> dict[str, Any]:
    """A JSON answer as an object: nothing is {}, a bare list is its `results`."""
    if data is None:
        return {}
    return data if isinstance(data, dict) else {"results": data}


def _query_value(value: str | int | float) -> str:
    """How a scalar is written in a list filter: strings as they are, numbers as JSON."""
    return value if isinstance(value, str) else json.dumps(value)

"""Buildium's Open API as a dialect: its auth headers, paths, paging, bodies and errors.

- Auth: every request carries `x-buildium-client-id` and `x-buildium-client-secret`.
- Paths: `/v1/leases/tenants`, `/v1/applicants`, `/v1/leases`, `/v1/rentals/units`, one record
  at `{path}/{id}` (ids are int32); bodies and records are PascalCase messages, translated
  both ways by `pmsq.pms.vendors.buildium.mapping`.
- Paging: `offset` (zero-based) and `limit` (1 to 1000); a list answers a bare JSON array and
  the size of the whole result set in the `X-Total-Count` header.
- Updates: a `PUT` replaces the record, so the connector first reads it (`current_call`) and
  the update carries what the client did not change.
- Errors: `{"UserMessage", "ErrorCode", "Errors": [{"Key", "Value"}]}`; a validation error's
  keys are Buildium field names, reported with the unified name they map to.
- No idempotency keys: a re-attempted create reads back records updated since the write was
  accepted (`lastupdatedfrom`) and the connector matches them field by field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import AliasChoices, ConfigDict, Field, SecretStr, field_validator

from pmsq.errors import PmsError
from pmsq.pms.dialect import Call, Credentials, Dialect
from pmsq.pms.http import json_body
from pmsq.pms.vendors.buildium.mapping import MODELS, ModelMap

#: Auth headers Buildium's security schemes name.
CLIENT_ID_HEADER = "x-buildium-client-id"
CLIENT_SECRET_HEADER = "x-buildium-client-secret"
#: List answers carry the size of the whole result set here.
TOTAL_COUNT_HEADER = "X-Total-Count"
#: Largest `limit` Buildium takes.
MAX_LIMIT = 1000
#: Wire format name shown in the capabilities answer.
WIRE_FORMAT = "buildium"


class BuildiumCredentials(Credentials):
    """An API key's client id and secret, as Buildium issues them (Settings > Developer Tools).

    Both are kept out of reprs and job logs: Buildium calls the id safe to share, but it names
    the account. Unknown fields are refused, so a misspelt one is not stored silently. Propexo's
    spelling (`clientId`, `secret`) is accepted too, so a Propexo client's integration works.
    """

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"client_id": "3f1c0a7e-client-id", "client_secret": "bld_secret_0123456789"}
            ]
        },
    )

    client_id: SecretStr = Field(
        min_length=1, validation_alias=AliasChoices("client_id", "clientId")
    )
    client_secret: SecretStr = Field(
        min_length=1, validation_alias=AliasChoices("client_secret", "secret")
    )

    @field_validator("client_id", "client_secret")
    @classmethod
    def _usable_in_a_header(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret != secret.strip() or any(c in secret for c in "\r\n"):
            raise ValueError("must be a string without surrounding spaces or newlines")
        return value


class BuildiumDialect(Dialect[BuildiumCredentials]):
    wire_format = WIRE_FORMAT

    def auth_headers(self) -> dict[str, str]:
        if self.credentials is None:
            return {}
        return {
            CLIENT_ID_HEADER: self.credentials.client_id.get_secret_value(),
            CLIENT_SECRET_HEADER: self.credentials.client_secret.get_secret_value(),
        }

    def create_call(self, model: str, body: dict[str, Any], idempotency_key: str | None) -> Call:
        mapping = _model(model)
        return Call("POST", mapping.collection(body), body=mapping.to_buildium(body, create=True))

    def current_call(self, model: str, record_id: str) -> Call | None:
        return Call("GET", f"{_model(model).path}/{record_id}")

    def update_call(
        self,
        model: str,
        record_id: str,
        body: dict[str, Any],
        idempotency_key: str | None,
        current: dict[str, Any] | None = None,
    ) -> Call:
        mapping = _model(model)
        message = mapping.to_buildium(body, create=False, current=current)
        return Call("PUT", f"{mapping.path}/{record_id}", body=message)

    def validate_call(self, model: str, body: dict[str, Any]) -> Call:
        raise PmsError(f"Buildium cannot validate a {model} create on its own", retryable=False)

    def list_call(self, model: str, page: int, page_size: int) -> Call:
        limit = max(1, min(page_size, MAX_LIMIT))
        params = {"offset": str((page - 1) * limit), "limit": str(limit)}
        return Call("GET", _model(model).path, params=params)

    def read_back_call(
        self,
        model: str,
        wanted: dict[str, str | int | float],
        created_after: datetime | None,
        limit: int,
    ) -> Call:
        """Buildium filters lists by last update, not creation: a record created after the
        write was accepted was updated then too, so nothing is missed, and the connector checks
        every field again."""
        params = {"offset": "0", "limit": str(max(1, min(limit, MAX_LIMIT)))}
        if created_after is not None:
            instant = created_after.astimezone(UTC).replace(microsecond=0)
            params["lastupdatedfrom"] = instant.strftime("%Y-%m-%dT%H:%M:%SZ")
        return Call("GET", _model(model).collection(wanted), params=params)

    def record(self, method: str, response: httpx.Response) -> dict[str, Any]:
        data = json_body(method, response)
        if not isinstance(data, dict):
            return {}
        model = _model_of(response)
        if model is None:
            return {}
        return {**model.from_buildium(data), **model.path_values(response.request.url.path)}

    def page(self, method: str, response: httpx.Response) -> tuple[list[dict[str, Any]], bool]:
        data = json_body(method, response)
        model = _model_of(response)
        items = data if isinstance(data, list) else []
        if model is None:
            return [], _has_more(response, len(items))
        parent = model.path_values(response.request.url.path)
        records = [{**model.from_buildium(i), **parent} for i in items if isinstance(i, dict)]
        return records, _has_more(response, len(items))

    def error_message(self, response: httpx.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            return response.text
        if not isinstance(data, dict):
            return response.text
        model = _model_of(response)
        parts = [str(data.get("UserMessage") or data.get("ErrorCode") or "")]
        for error in data.get("Errors") or []:
            if isinstance(error, dict):
                key = str(error.get("Key") or "")
                unified = model.unified_name(key) if model is not None else None
                named = f"{unified} ({key})" if unified and unified != key else key
                parts.append(f"{named}: {error.get('Value')}")
        text = "; ".join(p for p in parts if p)
        return text or response.text


def _model(model: str) -> ModelMap:
    try:
        return MODELS[model]
    except KeyError:
        raise PmsError(f"Buildium has no resource for pmsq's {model}", retryable=False) from None


def _model_of(response: httpx.Response) -> ModelMap | None:
    """The model whose resource answered: the longest collection path the URL starts with."""
    try:
        path = response.request.url.path
    except RuntimeError:  # a response built without its request
        return None
    found = [m for m in MODELS.values() if m.answers(path)]
    return max(found, key=lambda m: len(m.path), default=None)


def _has_more(response: httpx.Response, received: int) -> bool:
    """Whether records follow this page: its offset plus what it held is short of the total.

    Without a readable `X-Total-Count`, a full page means more may follow.
    """
    try:
        params = response.request.url.params
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 0)
    except (RuntimeError, ValueError):
        offset, limit = 0, 0
    try:
        total = int(response.headers[TOTAL_COUNT_HEADER])
    except (KeyError, ValueError):
        return received > 0 and received >= limit
    return received > 0 and offset + received < total

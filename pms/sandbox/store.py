"""The sandbox's memory: PMS records per tenant and model, and answered idempotency keys.

Everything here is synchronous on purpose. The server runs on one asyncio loop, so a sequence of
calls with no `await` between them (look up a key, apply a write, remember the answer) is atomic;
that is what makes the sandbox's exactly-once bookkeeping trustworthy.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pmsq.pms.sandbox.errors import RecordNotFound

JsonObject = dict[str, Any]


def _matches(record: JsonObject, filters: Mapping[str, str]) -> bool:
    """Field equality by string compare; non-strings compare by their JSON text (`true`, `3`)."""
    for name, wanted in filters.items():
        if name not in record:
            return False
        value = record[name]
        text = value if isinstance(value, str) else json.dumps(value)
        if text != wanted:
            return False
    return True


class Store:
    """Records keyed by (tenant, model, id); ids are `<model>-<n>`, unique per tenant and model.

    Callers always get deep copies, so nothing outside can change a stored record by accident.
    Listing order is creation order. Each record's creation time (`time.time()` seconds, the
    PMS's own clock) is kept beside it, not in it, so lists can be narrowed by it.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, JsonObject]] = {}
        self._created_at_s: dict[tuple[str, str, str], float] = {}
        self._last_number: dict[tuple[str, str], int] = {}

    def create(
        self, tenant: str, model: str, fields: JsonObject, *, id_field: str = "id"
    ) -> JsonObject:
        """Store a new record; an id in `fields` is ignored because the PMS assigns ids.

        With the default `id_field` the id is `<model>-<n>`; with another (Buildium's `Id`) it
        is the number itself, an int in the record and its string as `record_id` here.
        """
        key = (tenant, model)
        number = self._last_number.get(key, 0) + 1
        self._last_number[key] = number
        record_id = f"{model}-{number}" if id_field == "id" else str(number)
        assigned: str | int = record_id if id_field == "id" else number
        record = {id_field: assigned, **{k: v for k, v in fields.items() if k != id_field}}
        self._records.setdefault(key, {})[record_id] = copy.deepcopy(record)
        self._created_at_s[(tenant, model, record_id)] = time.time()
        return record

    def exists(self, tenant: str, model: str, record_id: str) -> bool:
        return record_id in self._records.get((tenant, model), {})

    def get(self, tenant: str, model: str, record_id: str) -> JsonObject:
        """Raises `RecordNotFound` when the tenant has no such record."""
        return copy.deepcopy(self._stored(tenant, model, record_id))

    def update(self, tenant: str, model: str, record_id: str, fields: JsonObject) -> JsonObject:
        """Merge `fields` over the record (an `id` field is ignored); raises `RecordNotFound`."""
        stored = self._stored(tenant, model, record_id)
        stored.update(copy.deepcopy({k: v for k, v in fields.items() if k not in ("id", "Id")}))
        return copy.deepcopy(stored)

    def replace(
        self, tenant: str, model: str, record_id: str, fields: JsonObject, *, id_field: str = "id"
    ) -> JsonObject:
        """Put `fields` in place of the record (its id and creation time stay); raises
        `RecordNotFound`."""
        stored = self._stored(tenant, model, record_id)
        record = {id_field: stored[id_field], **{k: v for k, v in fields.items() if k != id_field}}
        self._records[(tenant, model)][record_id] = copy.deepcopy(record)
        return copy.deepcopy(record)

    def delete(self, tenant: str, model: str, record_id: str) -> None:
        """Raises `RecordNotFound` when the tenant has no such record."""
        self._stored(tenant, model, record_id)
        del self._records[(tenant, model)][record_id]
        del self._created_at_s[(tenant, model, record_id)]

    def find(
        self,
        tenant: str,
        model: str,
        filters: Mapping[str, str],
        created_after_s: float | None = None,
    ) -> list[JsonObject]:
        """Records of one tenant and model whose fields equal every filter, in creation order;
        with `created_after_s`, only those created at or after that epoch time."""
        records = self._records.get((tenant, model), {}).items()
        return [
            copy.deepcopy(r)
            for record_id, r in records
            if _matches(r, filters)
            and (
                created_after_s is None
                or self._created_at_s[(tenant, model, record_id)] >= created_after_s
            )
        ]

    def dump(self, tenant: str | None = None, model: str | None = None) -> list[JsonObject]:
        """Every record, optionally narrowed to a tenant and/or model, for test assertions."""
        return [
            copy.deepcopy(record)
            for (record_tenant, record_model), records in self._records.items()
            if tenant in (None, record_tenant) and model in (None, record_model)
            for record in records.values()
        ]

    def clear(self) -> None:
        """Forget every record and restart id numbering."""
        self._records.clear()
        self._created_at_s.clear()
        self._last_number.clear()

    def _stored(self, tenant: str, model: str, record_id: str) -> JsonObject:
        try:
            return self._records[(tenant, model)][record_id]
        except KeyError:
            raise RecordNotFound(f"{model}/{record_id} not found") from None


@dataclass(frozen=True)
class RememberedAnswer:
    """A 2xx answer to a keyed write, replayed verbatim to any later request with that key."""

    status: int
    body: Any
    record_id: str | None


class IdempotencyMemory:
    """Answers to keyed writes per (tenant, Idempotency-Key); only 2xx answers are kept.

    Keys are scoped to the tenant only, not to the path or body: a key reused for another write
    gets the first answer back, as most real PMS APIs do.
    """

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], RememberedAnswer] = {}

    def recall(self, tenant: str, key: str) -> RememberedAnswer | None:
        return self._answers.get((tenant, key))

    def remember(self, tenant: str, key: str, answer: RememberedAnswer) -> None:
        """Keep `answer` if it is a 2xx; errors are never remembered so a retry runs again."""
        if 200 <= answer.status < 300:
            self._answers[(tenant, key)] = answer

    def clear(self) -> None:
        self._answers.clear()

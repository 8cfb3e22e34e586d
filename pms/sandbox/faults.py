"""Fault rules injected per tenant: answer with an error status, or commit then answer late.

Rules are matched in insertion order and the first match wins; a rule with `times` set is used
that many times and then disappears. Matching and counting down happen without an `await`, so
concurrent requests never consume the same use twice.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FaultKind(StrEnum):
    #: Answer at once with `status` and do not apply the write.
    STATUS = "status"
    #: Apply the request normally, then wait `latency_ms` before answering.
    LATENCY = "latency"


class FaultSpec(BaseModel):
    """Body of `POST /_sandbox/faults`; unknown fields are an error so typos cannot pass."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1)
    method: str | None = None
    model: str | None = None
    path_contains: str | None = None
    kind: FaultKind
    status: int | None = Field(default=None, ge=400, le=599)
    message: str | None = None
    retry_after_s: float | None = Field(default=None, ge=0)
    latency_ms: int | None = Field(default=None, ge=0)
    #: Uses left; None means forever.
    times: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _kind_has_its_parameter(self) -> Self:
        if self.kind is FaultKind.STATUS and self.status is None:
            raise ValueError("status is required when kind is 'status'")
        if self.kind is FaultKind.LATENCY and self.latency_ms is None:
            raise ValueError("latency_ms is required when kind is 'latency'")
        if self.method is not None:
            self.method = self.method.upper()
        return self


class FaultRule:
    """One installed rule: its spec, its id, and how many uses remain."""

    def __init__(self, rule_id: str, spec: FaultSpec) -> None:
        self.id = rule_id
        self.spec = spec
        self.remaining = spec.times

    def matches(self, tenant: str, method: str, model: str | None, path: str) -> bool:
        spec = self.spec
        return (
            spec.tenant == tenant
            and spec.method in (None, method.upper())
            and spec.model in (None, model)
            and (spec.path_contains is None or spec.path_contains in path)
        )

    @property
    def error_message(self) -> str:
        """The rule's message, else the reason phrase of its status."""
        if self.spec.message is not None:
            return self.spec.message
        try:
            return HTTPStatus(self.spec.status or 500).phrase
        except ValueError:
            return "injected fault"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec.model_dump(mode="json"), "remaining": self.remaining}


class FaultBook:
    """The installed rules, in insertion order."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, spec: FaultSpec) -> FaultRule:
        rule = FaultRule(f"fault-{next(self._ids)}", spec)
        self._rules.append(rule)
        return rule

    def take(self, tenant: str, method: str, model: str | None, path: str) -> FaultRule | None:
        """The first rule matching the request, with one use consumed; None when none match."""
        for rule in self._rules:
            if rule.matches(tenant, method, model, path):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule
        return None

    def list(self) -> list[FaultRule]:
        return list(self._rules)

    def clear(self, tenant: str | None = None) -> int:
        """Remove every rule, or only the tenant's; returns how many were removed."""
        kept = [r for r in self._rules if tenant is not None and r.spec.tenant != tenant]
        removed = len(self._rules) - len(kept)
        self._rules = kept
        return removed

"""Fault rules injected per tenant: the PMS failing before, or after, it applied a write.

A rule fails the requests it matches in one of these ways (`FaultKind`): answer an error status
without applying (`status`, also `429` forever), apply and then lose the answer (`latency` past
the client's timeout, `apply_then_status` as a gateway 502 would, `apply_then_reset` as a
dropped connection would), or drop the connection before applying (`reset`).

Rules are matched in insertion order and the first one that fires wins. A rule with a
`probability` fires on that share of the requests it matches, drawn from its own RNG (seeded by
`seed`, so a bench can replay the same faults); a request it lets pass goes on to the next rule.
A rule with `times` set fires that many times and then disappears. Matching, drawing and
counting down happen without an `await`, so concurrent requests never consume the same use twice.
"""

from __future__ import annotations

import itertools
import random
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FaultKind(StrEnum):
    #: Answer at once with `status` and do not apply the write.
    STATUS = "status"
    #: Apply the request normally, then wait `latency_ms` before answering.
    LATENCY = "latency"
    #: Apply the request, then answer `status` instead of its result (an answer lost at a
    #: gateway): the client cannot tell whether the write happened.
    APPLY_THEN_STATUS = "apply_then_status"
    #: Apply the request, then drop the connection without a complete answer.
    APPLY_THEN_RESET = "apply_then_reset"
    #: Drop the connection without applying the request.
    RESET = "reset"


#: Kinds that answer with the rule's `status`.
STATUS_KINDS = frozenset({FaultKind.STATUS, FaultKind.APPLY_THEN_STATUS})
#: Kinds that run the request against the store before failing it.
APPLYING_KINDS = frozenset(
    {FaultKind.LATENCY, FaultKind.APPLY_THEN_STATUS, FaultKind.APPLY_THEN_RESET}
)
#: Kinds that drop the connection instead of answering.
RESET_KINDS = frozenset({FaultKind.APPLY_THEN_RESET, FaultKind.RESET})


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
    #: Delay before the answer (or the drop) of any kind; `latency` requires it.
    latency_ms: int | None = Field(default=None, ge=0)
    #: Uses left; None means forever.
    times: int | None = Field(default=None, ge=1)
    #: Share of the matching requests the rule fires on; None means every one.
    probability: float | None = Field(default=None, gt=0, le=1)
    #: Seed of the rule's own RNG for `probability`; None seeds it from the OS.
    seed: int | None = None

    @model_validator(mode="after")
    def _kind_has_its_parameter(self) -> Self:
        if self.kind in STATUS_KINDS and self.status is None:
            raise ValueError(f"status is required when kind is '{self.kind.value}'")
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
        self._rng = random.Random(spec.seed)

    def fires(self) -> bool:
        """Whether the rule fires on a request it matches: always, or with its probability."""
        probability = self.spec.probability
        return probability is None or self._rng.random() < probability

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
        """The first rule matching the request that fires, with one use consumed; else None."""
        for rule in self._rules:
            if rule.matches(tenant, method, model, path) and rule.fires():
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

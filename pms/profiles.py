"""What a vendor's PMS can do: models, actions, writable fields, and multi-call workflows.

Each vendor module (`pmsq.pms.vendors.*`, or a package registered under the `pmsq.vendors`
entry point) declares its profile with these types; the write validator, the job runner and
`GET /v1/admin/capabilities` all read the profiles through the registry
(`pmsq.pms.registry`), so what the API accepts and what the workers send can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pmsq.errors import UnknownFields, UnsupportedOperation, ValidationFailed

#: Client-facing write actions.
CREATE = "CREATE"
UPDATE = "UPDATE"
#: Internal workflow step: validate a CREATE at the PMS, then create in a child job.
VALIDATE_THEN_CREATE = "VALIDATE_THEN_CREATE"


@dataclass(frozen=True)
class NestedChildren:
    """A list field whose items become child jobs once the parent record exists.

    Example: an applicant's `contacts` are created one by one, each linked through
    `applicant_id` to the applicant the parent job created.
    """

    model: str
    link_field: str


@dataclass(frozen=True)
class FollowUp:
    """A field the PMS takes only in a call of its own, once the parent record exists: a value
    becomes one child job of `model` with `{value_field: value, link_field: parent id}`.

    Example: Buildium takes an applicant's notes only at `/v1/applicants/{id}/notes`, so an
    applicant created with `notes` is two calls, each its own job in the write's tree.
    """

    model: str
    link_field: str
    value_field: str


@dataclass(frozen=True)
class ModelSupport:
    actions: frozenset[str]
    fields: frozenset[str]
    nested: Mapping[str, NestedChildren] = field(default_factory=dict)
    #: How a client CREATE starts; a workflow vendor may validate first.
    create_step: str = CREATE
    #: Fields sent after the create, each in a child job of its own.
    follow_ups: Mapping[str, FollowUp] = field(default_factory=dict)

    def writable_fields(self) -> frozenset[str]:
        return self.fields | frozenset(self.nested) | frozenset(self.follow_ups)


@dataclass(frozen=True)
class VendorProfile:
    #: The vendor's name as integrations store it (`integration_vendor`).
    vendor: str
    models: Mapping[str, ModelSupport]
    #: The PMS honours an `Idempotency-Key` header; otherwise a re-attempt whose earlier
    #: outcome is unknown reads back before it writes again (see `reference_field`).
    supports_idempotency_key: bool = True
    #: A field the PMS stores and filters lists on, where a vendor without idempotency keys
    #: gets each create's stable key, so the read-back finds this write's record and no
    #: other. None: the read-back matches the payload among records created since the write
    #: was accepted (docs/exactly-once.md says what that cannot tell apart).
    reference_field: str | None = None
    #: The vendor's fixed API hosts, production first; empty when each customer has its own.
    #: An integration of such a vendor needs no base_url and may not point anywhere else.
    api_hosts: tuple[str, ...] = ()

    def support(self, model: str, action: str) -> ModelSupport:
        """The model's support, or UnsupportedOperation naming what the vendor lacks."""
        support = self.models.get(model)
        if support is None:
            raise UnsupportedOperation(
                f"{self.vendor} does not support the model '{model}'",
                [{"field": "model", "reason": f"not supported by {self.vendor}"}],
            )
        if action not in support.actions:
            raise UnsupportedOperation(
                f"{self.vendor} does not support {action} on {model}",
                [{"field": "action", "reason": f"{action} not supported on {model}"}],
            )
        return support

    def clean_payload(
        self, model: str, action: str, payload: Mapping[str, Any], *, ignore_unknown: bool
    ) -> dict[str, Any]:
        """The payload limited to fields the vendor supports.

        Raises UnknownFields naming every unsupported field unless `ignore_unknown`, in which
        case they are stripped.
        """
        allowed = self.support(model, action).writable_fields()
        unknown = sorted(set(payload) - allowed)
        if unknown and not ignore_unknown:
            raise UnknownFields(
                f"{self.vendor} does not support these fields on {model}: "
                + ", ".join(unknown)
                + " (add ?ignore_unknown_fields=true to strip them)",
                [{"field": name, "reason": "unknown field for this PMS"} for name in unknown],
            )
        cleaned = {k: v for k, v in payload.items() if k in allowed}
        problems = self._type_problems(model, cleaned, prefix="")
        if problems:
            raise ValidationFailed(
                "invalid field values: "
                + "; ".join(f"{p['field']} {p['reason']}" for p in problems),
                problems,
            )
        return cleaned

    def _type_problems(
        self, model: str, payload: Mapping[str, Any], prefix: str
    ) -> list[dict[str, str]]:
        problems: list[dict[str, str]] = []
        nested = self.models[model].nested if model in self.models else {}
        for name, value in payload.items():
            where = f"{prefix}{name}"
            if value is None:
                continue
            if name in nested:
                problems.extend(self._nested_problems(nested[name], value, where))
                continue
            expected = FIELD_TYPES.get(name, (str,))
            if isinstance(value, bool) or not isinstance(value, expected):
                names = " or ".join(TYPE_NAMES[t] for t in expected)
                problems.append({"field": where, "reason": f"must be {names}"})
            elif name in NUMERIC_TEXT and isinstance(value, str) and not _NUMBER.match(value):
                problems.append({"field": where, "reason": 'must be a number ("2", "1.5")'})
        return problems

    def _nested_problems(
        self, nested: NestedChildren, value: Any, where: str
    ) -> list[dict[str, str]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            return [{"field": where, "reason": "must be a list of objects"}]
        child = self.models.get(nested.model)
        allowed = child.fields - {nested.link_field} if child else frozenset()
        problems: list[dict[str, str]] = []
        for index, item in enumerate(value):
            for name in sorted(set(item) - allowed):
                problems.append({"field": f"{where}[{index}].{name}", "reason": "unknown field"})
            known = {k: v for k, v in item.items() if k in allowed}
            problems.extend(self._type_problems(nested.model, known, f"{where}[{index}]."))
        return problems


#: JSON types of writable fields; a field not listed is a string. Money is in integer cents,
#: as Propexo's unified models carry it; bedrooms and bathrooms are strings there ("2", "1.5")
#: and numbers are accepted too.
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "rent_amount_in_cents": (int,),
    "rent_amount_market_in_cents": (int, float),
    "bedrooms": (str, int),
    "bathrooms": (str, int, float),
}
#: Fields given as text that must read as a number ("2", "1.5").
NUMERIC_TEXT = frozenset({"bedrooms", "bathrooms"})
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")
TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list"}

# Building blocks the vendor modules share: pmsq's unified models and their writable fields
# (Propexo's field names: `email_1`, `phone_1`, `rent_amount_in_cents`...) are the same for
# every vendor; a profile says which of them its PMS takes. `unit_id` and `move_in_date` on a
# resident, and the `contacts` model, are pmsq's additions.
PERSON_FIELDS = frozenset(
    {
        "first_name",
        "middle_name",
        "last_name",
        "email_1",
        "email_2",
        "phone_1",
        "phone_1_type",
        "phone_2",
        "phone_2_type",
        "date_of_birth",
        "move_in_date",
        "property_id",
        "lease_id",
        "unit_id",
    }
)
LEASE_FIELDS = frozenset(
    {"resident_id", "property_id", "unit_id", "start_date", "end_date", "rent_amount_in_cents"}
)
UNIT_FIELDS = frozenset(
    {"name", "property_id", "bedrooms", "bathrooms", "rent_amount_market_in_cents"}
)
CONTACT_FIELDS = frozenset({"applicant_id", "email_1", "phone_1", "kind"})
CONTACTS = {"contacts": NestedChildren(model="contacts", link_field="applicant_id")}
BOTH = frozenset({CREATE, UPDATE})

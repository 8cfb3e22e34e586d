"""Custom enum mappings: how a vendor's own values of an enum field become Propexo's values.

A cached record keeps the vendor's value in the field itself (`status`) and in `{field}_raw`,
and gets the normalized value in `{field}_normalized` (Propexo's `status_raw` and
`status_normalized`): the vendor's values map through the integration's custom mapping if it
has one, else through the vendor's default one; a value neither maps gets the mapping's
`default_value`. Normalizing adds fields and never changes what the vendor sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    Connection,
    ForeignKey,
    String,
    Table,
    UniqueConstraint,
    event,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Mapper, Session, mapped_column

from pmsq.models.base import Base, new_id, utcnow
from pmsq.models.enums import Vendor
from pmsq.models.integration import Integration


@dataclass(frozen=True)
class EnumField:
    """One normalized enum field, as the API names it (`model`/`field` in the path) and as
    records carry it."""

    record_model: str
    record_field: str
    #: Propexo's normalized values.
    values: frozenset[str]
    default_value: str = "OTHER"


#: The API's `(model, field)` path pairs with custom enum mappings (Propexo's list).
ENUM_FIELDS: dict[tuple[str, str], EnumField] = {
    ("leases", "status"): EnumField(
        "leases", "status", frozenset({"ACTIVE", "INACTIVE", "OTHER", "PENDING", "EVICTED"})
    ),
    ("residents", "type"): EnumField(
        "residents", "type", frozenset({"PRIMARY", "SECONDARY", "GUARANTOR", "OTHER"})
    ),
    ("billing", "payment-method"): EnumField(
        "transactions",
        "payment_method",
        frozenset(
            {
                "CASH",
                "CASHIERCHECK",
                "CHECK",
                "CREDITCARD",
                "MONEYORDER",
                "DIRECTDEPOSIT",
                "ELECTRONICPAYMENT",
                "OTHER",
            }
        ),
    ),
    ("properties", "type"): EnumField(
        "properties",
        "type",
        frozenset(
            {"SINGLE_FAMILY", "MULTI_FAMILY", "STUDENT_HOUSING", "VACATION", "COMMERCIAL", "OTHER"}
        ),
    ),
    ("applicants", "status"): EnumField(
        "applicants", "status", frozenset({"APPROVED", "DENIED", "CANCELED", "OTHER", "PENDING"})
    ),
    ("applicants", "type"): EnumField(
        "applicants", "type", frozenset({"GUARANTOR", "OTHER", "PRIMARY", "SECONDARY"})
    ),
}

#: Each record model's normalized fields.
FIELDS_BY_MODEL: dict[str, tuple[EnumField, ...]] = {
    model: tuple(f for f in ENUM_FIELDS.values() if f.record_model == model)
    for model in {f.record_model for f in ENUM_FIELDS.values()}
}

#: The vendors' default mappings, where pmsq knows the vendor's values (Buildium's published
#: enums); elsewhere every value takes the field's default until an integration maps it.
DEFAULT_MAPPINGS: dict[str, dict[tuple[str, str], dict[str, str]]] = {
    Vendor.BUILDIUM.value: {
        ("leases", "status"): {"Active": "ACTIVE", "Past": "INACTIVE", "Future": "PENDING"},
        ("applicants", "status"): {
            "Approved": "APPROVED",
            "AddedToLease": "APPROVED",
            "AddedToDraftLease": "APPROVED",
            "Rejected": "DENIED",
            "Cancelled": "CANCELED",
            "New": "PENDING",
            "Undecided": "PENDING",
            "Deferred": "PENDING",
            "Draft": "PENDING",
        },
    },
}


class EnumMapping(Base):
    """An integration's own mapping of one enum field (replacing its vendor's default)."""

    __tablename__ = "enum_mappings"
    __table_args__ = (UniqueConstraint("integration_id", "model", "field"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"), index=True)
    #: The record model and field (`transactions` / `payment_method`, not the API's path).
    model: Mapped[str] = mapped_column(String(60))
    field: Mapped[str] = mapped_column(String(60))
    #: `{vendor value: normalized value}`.
    mappings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    default_value: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


_INTEGRATIONS = cast(Table, Integration.__table__)


def _move_integration_version(_mapper: Mapper[Any], connection: Connection, row: Any) -> None:
    """Every insert, update or delete of a custom mapping moves its integration's `updated_at`
    in the flush that writes it: the version a worker keeps the integration's mappings by
    (`pmsq.workers.record_cache.EnumMappingCache`), as it keeps the integration itself."""
    connection.execute(
        update(_INTEGRATIONS)
        .where(_INTEGRATIONS.c.id == row.integration_id)
        .values(updated_at=utcnow())
    )


for _change in ("after_insert", "after_update", "after_delete"):
    event.listen(EnumMapping, _change, _move_integration_version)


@dataclass(frozen=True)
class FieldMapping:
    mappings: Mapping[str, str]
    default_value: str
    is_custom: bool

    def normalize(self, raw: Any) -> str | None:
        if raw is None:
            return None
        return self.mappings.get(str(raw), self.default_value)


def default_mapping(vendor: str, spec: EnumField) -> FieldMapping:
    defaults = DEFAULT_MAPPINGS.get(vendor, {}).get((spec.record_model, spec.record_field), {})
    return FieldMapping(defaults, spec.default_value, is_custom=False)


def field_mappings(
    session: Session, integration_id: str, vendor: str, model: str
) -> dict[str, FieldMapping]:
    """The mapping of each normalized field of `model` for the integration: its own where it
    has one, its vendor's default elsewhere (one query; none for a model without enums)."""
    specs = FIELDS_BY_MODEL.get(model, ())
    if not specs:
        return {}
    custom = {
        row.field: FieldMapping(dict(row.mappings), row.default_value, is_custom=True)
        for row in session.scalars(
            select(EnumMapping).where(
                EnumMapping.integration_id == integration_id, EnumMapping.model == model
            )
        )
    }
    return {
        spec.record_field: custom.get(spec.record_field) or default_mapping(vendor, spec)
        for spec in specs
    }


def normalized(data: Mapping[str, Any], mappings: Mapping[str, FieldMapping]) -> dict[str, Any]:
    """`data` with `{field}_raw` and `{field}_normalized` added for each mapped field it has."""
    out = dict(data)
    for name, mapping in mappings.items():
        if name in data:
            out[f"{name}_raw"] = data[name]
            out[f"{name}_normalized"] = mapping.normalize(data[name])
    return out


# -- what crosses the HTTP boundary ------------------------------------------------------------


class EnumMappingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mappings: dict[str, str] = Field(
        max_length=500, description="The vendor's values (keys) and Propexo's values they become"
    )
    default_value: str = Field(description="What a vendor value not in `mappings` becomes")

"""Custom enum mappings: read a field's mapping (an integration's own or its vendor's default)
and set or drop an integration's own. The record cache applies them (`models.normalization`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.services.integrations import owned_integration
from pmsq.errors import ValidationFailed
from pmsq.models.base import utcnow
from pmsq.models.enums import Vendor
from pmsq.models.normalization import (
    ENUM_FIELDS,
    EnumField,
    EnumMapping,
    EnumMappingUpdate,
    FieldMapping,
    default_mapping,
)
from pmsq.models.schemas import NormalizationOut


def enum_field(model: str, field: str) -> EnumField:
    """The normalized field at `model`/`field`, or a 400 naming the path parameter at fault."""
    spec = ENUM_FIELDS.get((model, field))
    if spec is not None:
        return spec
    models = sorted({m for m, _ in ENUM_FIELDS})
    if model not in models:
        reason = f"no enum mappings for model '{model}' (one of {', '.join(models)})"
        raise ValidationFailed(reason, [{"field": "model", "reason": reason}])
    fields = sorted(f for m, f in ENUM_FIELDS if m == model)
    reason = f"no enum mappings for {model}.{field} (fields: {', '.join(fields)})"
    raise ValidationFailed(reason, [{"field": "field", "reason": reason}])


def _vendor(name: str) -> str:
    if name not in {v.value for v in Vendor}:
        reason = f"unknown vendor '{name}'"
        raise ValidationFailed(reason, [{"field": "integration_vendor", "reason": reason}])
    return name


def _out(mapping: FieldMapping) -> NormalizationOut:
    return NormalizationOut(
        is_custom_mapping=mapping.is_custom,
        mappings=dict(mapping.mappings),
        default_value=mapping.default_value,
    )


class NormalizationService:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    def get(
        self, account_id: str, model: str, field: str, vendor: str, integration_id: str | None
    ) -> NormalizationOut:
        """The integration's own mapping if it has one, else `vendor`'s default."""
        spec = enum_field(model, field)
        vendor = _vendor(vendor)
        if integration_id is not None:
            with self._session_factory() as session:
                owned_integration(session, account_id, integration_id)
                row = self._custom(session, integration_id, spec)
                if row is not None:
                    return _out(FieldMapping(row.mappings, row.default_value, is_custom=True))
        return _out(default_mapping(vendor, spec))

    def put(
        self,
        account_id: str,
        model: str,
        field: str,
        integration_id: str,
        spec_in: EnumMappingUpdate,
    ) -> NormalizationOut:
        """Set the integration's own mapping; a value outside Propexo's enum is a 400 naming
        it. Records are normalized with it as syncs and writes next cache them."""
        spec = enum_field(model, field)
        allowed = ", ".join(sorted(spec.values))
        bad = [
            (f"mappings.{raw}", value)
            for raw, value in spec_in.mappings.items()
            if value not in spec.values
        ]
        if spec_in.default_value not in spec.values:
            bad.append(("default_value", spec_in.default_value))
        if bad:
            raise ValidationFailed(
                f"{model}.{field} normalizes to one of {allowed}",
                [
                    {"field": name, "reason": f"'{value}' is not one of {allowed}"}
                    for name, value in bad
                ],
            )
        with self._session_factory.begin() as session:
            owned_integration(session, account_id, integration_id)
            row = self._custom(session, integration_id, spec)
            if row is None:
                row = EnumMapping(
                    integration_id=integration_id,
                    model=spec.record_model,
                    field=spec.record_field,
                )
                session.add(row)
            row.mappings = dict(spec_in.mappings)
            row.default_value = spec_in.default_value
            row.updated_at = utcnow()
            return _out(FieldMapping(row.mappings, row.default_value, is_custom=True))

    def delete(
        self, account_id: str, model: str, field: str, integration_id: str
    ) -> NormalizationOut:
        """Drop the integration's own mapping: its vendor's default applies again."""
        spec = enum_field(model, field)
        with self._session_factory.begin() as session:
            integration = owned_integration(session, account_id, integration_id)
            row = self._custom(session, integration_id, spec)
            if row is not None:
                # Through the session, not a bulk DELETE: the mapping's flush moves the
                # integration's version, so no worker keeps normalizing with the old one.
                session.delete(row)
            return _out(default_mapping(integration.integration_vendor, spec))

    @staticmethod
    def _custom(session: Session, integration_id: str, spec: EnumField) -> EnumMapping | None:
        return session.scalars(
            select(EnumMapping).where(
                EnumMapping.integration_id == integration_id,
                EnumMapping.model == spec.record_model,
                EnumMapping.field == spec.record_field,
            )
        ).one_or_none()

"""Property configurations: which of an integration's PMS properties pmsq writes for.

A property without a configuration follows its integration's `new_properties_are_enabled`;
the first time the API lists a cached property it records that default as its configuration,
so a later change of the integration's default does not flip properties already seen.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pmsq.models.base import Base, new_id, utcnow

#: The cached model whose records are the integration's properties; the other models' records
#: name theirs in `property_id`.
PROPERTIES_MODEL = "properties"


class PropertyConfiguration(Base):
    __tablename__ = "property_configurations"
    __table_args__ = (UniqueConstraint("integration_id", "property_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"), index=True)
    #: The property's id at the PMS (the cached `properties` record's `pms_id`).
    property_id: Mapped[str] = mapped_column(String(200))
    #: False: writes naming this property are refused (400).
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def disabled_properties(
    session: Session,
    integration_id: str,
    new_properties_are_enabled: bool,
    property_ids: Collection[str],
) -> set[str]:
    """Which of `property_ids` the integration neither writes nor syncs for: disabled by
    their configuration or, without one, by `new_properties_are_enabled`. One query for all
    of them (a sync asks once per page)."""
    if not property_ids:
        return set()
    rows = session.execute(
        select(PropertyConfiguration.property_id, PropertyConfiguration.enabled).where(
            PropertyConfiguration.integration_id == integration_id,
            PropertyConfiguration.property_id.in_(list(property_ids)),
        )
    )
    configured = {property_id: enabled for property_id, enabled in rows}
    return {
        property_id
        for property_id in property_ids
        if not configured.get(property_id, new_properties_are_enabled)
    }


# -- what crosses the HTTP boundary ------------------------------------------------------------


class PropertyConfigurationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    trigger_integration_resync: bool = Field(
        default=False, description="Start a manual sync of the integration after the change"
    )


#: Most property configurations one batch update may name.
MAX_BATCH = 1000


class PropertyConfigurationBatchUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    property_configuration_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)
    enabled: bool


class PropertyConfigurationOut(BaseModel):
    id: str
    created_at: datetime
    integration_id: str
    property_id: str
    enabled: bool


class PropertyConfigurationUpdated(PropertyConfigurationOut):
    additional_message: str | None = None


class PropertyConfigurationEnvelope(BaseModel):
    results: PropertyConfigurationUpdated


# -- property list configurations --------------------------------------------------------------


class PropertyListConfigurationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x_property_list_id: str = Field(min_length=1, max_length=200)
    enabled: bool


class PropertyListConfigurationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class PropertyListConfigurationOut(BaseModel):
    id: str
    created_at: datetime
    integration_id: str
    property_list_id: str
    x_property_list_id: str
    enabled: bool


class PropertyListConfigurationEnvelope(BaseModel):
    results: PropertyListConfigurationOut

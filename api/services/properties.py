"""Property configurations: list an integration's properties with whether pmsq writes for
them, change one, and the check every write makes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.pagination import PageRequest, paginate, single
from pmsq.api.services.integrations import owned_integration
from pmsq.errors import NotFound, ValidationFailed
from pmsq.models.base import utcnow
from pmsq.models.enums import vendor_on_wire
from pmsq.models.integration import Integration
from pmsq.models.property import (
    PROPERTIES_MODEL,
    PropertyConfiguration,
    PropertyConfigurationOut,
    disabled_properties,
)
from pmsq.models.record import Record

SORTABLE = {
    "created_at": PropertyConfiguration.created_at,
    "property_id": PropertyConfiguration.property_id,
}


def to_out(config: PropertyConfiguration) -> PropertyConfigurationOut:
    return PropertyConfigurationOut(
        id=config.id,
        created_at=config.created_at,
        integration_id=config.integration_id,
        property_id=config.property_id,
        enabled=config.enabled,
    )


def check_property_enabled(
    connection: Connection,
    integration_id: str,
    new_properties_are_enabled: bool,
    property_id: Any,
) -> None:
    """Refuses (400 naming `property_id`) a write for a property the integration does not
    write for: disabled by its configuration or, with none, by `new_properties_are_enabled`
    (the integration's). Runs on the write's connection (in its transaction, if any): a
    Session is made for the query only when the write names a property."""
    if not isinstance(property_id, str) or not property_id:
        return
    with Session(connection) as session:
        disabled = disabled_properties(
            session, integration_id, new_properties_are_enabled, [property_id]
        )
    if disabled:
        raise ValidationFailed(
            f"property '{property_id}' is disabled for integration '{integration_id}'",
            [{"field": "property_id", "reason": "property disabled for this integration"}],
        )


class PropertyService:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    def list(self, account_id: str, integration_id: str, page: PageRequest) -> dict[str, Any]:
        """The integration's configured properties; cached properties seen for the first time
        are configured now with the integration's `new_properties_are_enabled`."""
        with self._session_factory.begin() as session:
            integration = owned_integration(session, account_id, integration_id)
            self._configure_new(session, integration)
            stmt = select(PropertyConfiguration).where(
                PropertyConfiguration.integration_id == integration_id
            )
            return paginate(
                session,
                stmt,
                page,
                SORTABLE,
                "created_at:desc",
                lambda row: to_out(row).model_dump(mode="json"),
            )

    def update(
        self, account_id: str, integration_id: str, configuration_id: str, enabled: bool
    ) -> PropertyConfigurationOut:
        with self._session_factory.begin() as session:
            owned_integration(session, account_id, integration_id)
            config = session.get(PropertyConfiguration, configuration_id)
            if config is None or config.integration_id != integration_id:
                raise NotFound(
                    f"no property configuration with id '{configuration_id}'",
                    [{"field": "property_configuration_id", "reason": "unknown"}],
                )
            config.enabled = enabled
            config.updated_at = utcnow()
            session.flush()
            return to_out(config)

    def update_many(
        self, account_id: str, integration_id: str, configuration_ids: Sequence[str], enabled: bool
    ) -> None:
        """All of them or none: an id that is not one of the integration's configurations is
        a 400 naming `property_configuration_ids`, and nothing changes."""
        wanted = set(configuration_ids)
        with self._session_factory.begin() as session:
            owned_integration(session, account_id, integration_id)
            configs = session.scalars(
                select(PropertyConfiguration).where(
                    PropertyConfiguration.integration_id == integration_id,
                    PropertyConfiguration.id.in_(sorted(wanted)),
                )
            ).all()
            unknown = sorted(wanted - {config.id for config in configs})
            if unknown:
                raise ValidationFailed(
                    f"no property configuration with id {', '.join(map(repr, unknown))} "
                    f"in integration '{integration_id}'",
                    [{"field": "property_configuration_ids", "reason": "unknown id"}],
                )
            now = utcnow()
            for config in configs:
                config.enabled = enabled
                config.updated_at = now

    # -- property list configurations: pmsq reads no property lists -----------------------

    def list_property_lists(
        self, account_id: str, integration_id: str, page: PageRequest
    ) -> dict[str, Any]:
        """Always empty: no vendor pmsq syncs has property lists it reads, so none can be
        configured (see `create_property_list`)."""
        with self._session_factory() as session:
            owned_integration(session, account_id, integration_id)
        envelope = single([])
        envelope["meta"].update(offset=page.offset, limit=page.limit, total=0)
        return envelope

    def create_property_list(self, account_id: str, integration_id: str) -> NoReturn:
        """Refused (400 naming `x_property_list_id`): a property list configuration says which
        of the PMS's property lists to sync, and pmsq reads none from any vendor, so accepting
        one would gate nothing while claiming to."""
        with self._session_factory() as session:
            integration = owned_integration(session, account_id, integration_id)
            vendor = vendor_on_wire(integration.integration_vendor)
        reason = f"pmsq reads no property lists from {vendor}; sync properties individually"
        raise ValidationFailed(
            f"x_property_list_id: {reason}", [{"field": "x_property_list_id", "reason": reason}]
        )

    def update_property_list(
        self, account_id: str, integration_id: str, configuration_id: str
    ) -> NoReturn:
        """Every id is unknown: none can be created."""
        with self._session_factory() as session:
            owned_integration(session, account_id, integration_id)
        raise NotFound(
            f"no property list configuration with id '{configuration_id}'",
            [{"field": "property_list_configuration_id", "reason": "unknown"}],
        )

    @staticmethod
    def _configure_new(session: Session, integration: Integration) -> None:
        known = select(PropertyConfiguration.property_id).where(
            PropertyConfiguration.integration_id == integration.id
        )
        unseen = session.scalars(
            select(Record.pms_id).where(
                Record.integration_id == integration.id,
                Record.model == PROPERTIES_MODEL,
                Record.pms_id.not_in(known),
            )
        ).all()
        now = utcnow()
        session.add_all(
            PropertyConfiguration(
                integration_id=integration.id,
                property_id=pms_id,
                enabled=integration.new_properties_are_enabled,
                created_at=now,
                updated_at=now,
            )
            for pms_id in unseen
        )
        session.flush()

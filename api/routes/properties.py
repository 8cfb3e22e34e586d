"""Property configurations of an integration: which PMS properties pmsq writes for."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from pmsq.api.context import ApiContext
from pmsq.api.pagination import PageRequest, page_request
from pmsq.api.routes.deps import account_dependency, refuse_unknown_query
from pmsq.errors import Conflict
from pmsq.models.property import (
    PropertyConfigurationBatchUpdate,
    PropertyConfigurationEnvelope,
    PropertyConfigurationOut,
    PropertyConfigurationUpdate,
    PropertyConfigurationUpdated,
    PropertyListConfigurationCreate,
    PropertyListConfigurationEnvelope,
    PropertyListConfigurationOut,
    PropertyListConfigurationUpdate,
)
from pmsq.models.schemas import ErrorResponse, Page, Success
from pmsq.models.sync import SyncType

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404)
}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1/admin/integrations/{integration_id}/properties",
        tags=["properties"],
        dependencies=[Depends(refuse_unknown_query)],
    )
    current_account = account_dependency(ctx)

    @router.get(
        "",
        response_model=Page[PropertyConfigurationOut],
        responses=ERRORS,
        summary="Property configurations: the integration's properties and whether pmsq "
        "writes for them",
    )
    def list_properties(
        integration_id: str,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.properties.list(account_id, integration_id, page)

    # Declared before "/{property_configuration_id}", which would otherwise take "batch".
    @router.put(
        "/batch",
        response_model=Success,
        responses=ERRORS,
        summary="Bulk enable or disable property configurations (all of them or none)",
    )
    def update_properties(
        integration_id: str,
        spec: PropertyConfigurationBatchUpdate,
        account_id: str = Depends(current_account),
    ) -> Success:
        ctx.properties.update_many(
            account_id, integration_id, spec.property_configuration_ids, spec.enabled
        )
        return Success(success=True)

    @router.put(
        "/{property_configuration_id}",
        response_model=PropertyConfigurationEnvelope,
        responses=ERRORS,
        summary="Enable or disable a property (writes for a disabled one are refused)",
    )
    def update_property(
        integration_id: str,
        property_configuration_id: str,
        spec: PropertyConfigurationUpdate,
        account_id: str = Depends(current_account),
    ) -> PropertyConfigurationEnvelope:
        config = ctx.properties.update(
            account_id, integration_id, property_configuration_id, spec.enabled
        )
        message = None
        if spec.trigger_integration_resync:
            try:
                ctx.syncs.trigger(account_id, integration_id, SyncType.MANUAL, None)
                message = "a manual sync of the integration was started"
            except Conflict as exc:
                message = f"no resync: {exc.message}"
        return PropertyConfigurationEnvelope(
            results=PropertyConfigurationUpdated(**config.model_dump(), additional_message=message)
        )

    return router


def build_property_lists_router(ctx: ApiContext) -> APIRouter:
    """Propexo's property list configurations. pmsq reads no property lists from any vendor,
    so the list is empty and a new configuration is refused (400) rather than accepted and
    never applied."""
    router = APIRouter(
        prefix="/v1/admin/integrations/{integration_id}/property-lists",
        tags=["properties"],
        dependencies=[Depends(refuse_unknown_query)],
    )
    current_account = account_dependency(ctx)

    @router.get(
        "",
        response_model=Page[PropertyListConfigurationOut],
        responses=ERRORS,
        summary="Get all my property list configurations (none: pmsq reads no property lists)",
    )
    def list_property_lists(
        integration_id: str,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.properties.list_property_lists(account_id, integration_id, page)

    @router.post(
        "",
        response_model=PropertyListConfigurationEnvelope,
        responses=ERRORS,
        summary="Create a property list configuration (refused: pmsq reads no property lists)",
    )
    def create_property_list(
        integration_id: str,
        _spec: PropertyListConfigurationCreate,
        account_id: str = Depends(current_account),
    ) -> PropertyListConfigurationEnvelope:
        ctx.properties.create_property_list(account_id, integration_id)

    @router.put(
        "/{property_list_configuration_id}",
        response_model=PropertyListConfigurationEnvelope,
        responses=ERRORS,
        summary="Update a property list configuration (none exists: 404)",
    )
    def update_property_list(
        integration_id: str,
        property_list_configuration_id: str,
        _spec: PropertyListConfigurationUpdate,
        account_id: str = Depends(current_account),
    ) -> PropertyListConfigurationEnvelope:
        ctx.properties.update_property_list(
            account_id, integration_id, property_list_configuration_id
        )

    return router

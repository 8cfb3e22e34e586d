"""Propexo's webhook endpoints, `/v1/webhooks/`: triggers, a client-chosen secret, headers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from pmsq.api.context import ApiContext
from pmsq.api.pagination import NullableBool, PageRequest, page_request, single
from pmsq.api.routes.deps import account_dependency, refuse_unknown_query
from pmsq.models.schemas import ErrorResponse, Page, Results
from pmsq.models.webhook import (
    PropexoWebhookCreate,
    PropexoWebhookEnvelope,
    PropexoWebhookOut,
    PropexoWebhookUpdate,
    WebhookDeletedEnvelope,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404)
}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(refuse_unknown_query)]
    )
    current_account = account_dependency(ctx)

    @router.get(
        "/",
        response_model=Page[PropexoWebhookOut],
        responses=ERRORS,
        summary="Get webhooks: active ones unless `active` is false, or null for all",
    )
    def list_webhooks(
        active: NullableBool = True,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.webhooks.propexo_list(account_id, page, active)

    @router.post(
        "/",
        response_model=PropexoWebhookEnvelope,
        responses=ERRORS,
        summary="Create a webhook (inactive unless `active` is true)",
    )
    def create_webhook(
        spec: PropexoWebhookCreate, account_id: str = Depends(current_account)
    ) -> PropexoWebhookEnvelope:
        return PropexoWebhookEnvelope(result=ctx.webhooks.propexo_create(account_id, spec))

    @router.get(
        "/{webhook_id}",
        response_model=Results[PropexoWebhookOut],
        responses=ERRORS,
        summary="Get a webhook by id",
    )
    def get_webhook(webhook_id: str, account_id: str = Depends(current_account)) -> dict[str, Any]:
        return single(ctx.webhooks.propexo_get(account_id, webhook_id))

    @router.put(
        "/{webhook_id}",
        response_model=PropexoWebhookEnvelope,
        responses=ERRORS,
        summary="Update a webhook (what is given)",
    )
    def update_webhook(
        webhook_id: str, spec: PropexoWebhookUpdate, account_id: str = Depends(current_account)
    ) -> PropexoWebhookEnvelope:
        return PropexoWebhookEnvelope(
            result=ctx.webhooks.propexo_update(account_id, webhook_id, spec)
        )

    @router.delete(
        "/{webhook_id}",
        response_model=WebhookDeletedEnvelope,
        responses=ERRORS,
        summary="Delete a webhook: nothing more is sent to it",
    )
    def delete_webhook(
        webhook_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        ctx.webhooks.delete(account_id, webhook_id)
        return {"result": {"id": webhook_id}}

    return router

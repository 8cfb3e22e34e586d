"""Webhook endpoints of the caller's account, and their delivery log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from pmsq.api.context import ApiContext
from pmsq.api.pagination import PageRequest, page_request
from pmsq.api.routes.deps import account_dependency, refuse_unknown_query
from pmsq.models.schemas import ErrorResponse, Page, Success
from pmsq.models.webhook import (
    WebhookCreate,
    WebhookCreatedEnvelope,
    WebhookDeliveryOut,
    WebhookEnvelope,
    WebhookOut,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404)
}


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(
        prefix="/v1/admin/webhooks", tags=["webhooks"], dependencies=[Depends(refuse_unknown_query)]
    )
    current_account = account_dependency(ctx)

    @router.post(
        "/",
        status_code=201,
        response_model=WebhookCreatedEnvelope,
        responses=ERRORS,
        summary="Register a webhook (the signing secret is returned in this response only)",
    )
    def create_webhook(
        spec: WebhookCreate, account_id: str = Depends(current_account)
    ) -> WebhookCreatedEnvelope:
        return WebhookCreatedEnvelope(result=ctx.webhooks.create(account_id, spec))

    @router.get(
        "/", response_model=Page[WebhookOut], responses=ERRORS, summary="Get all my webhooks"
    )
    def list_webhooks(
        page: PageRequest = Depends(page_request), account_id: str = Depends(current_account)
    ) -> dict[str, Any]:
        return ctx.webhooks.list(account_id, page)

    @router.get(
        "/{webhook_id}/",
        response_model=WebhookEnvelope,
        responses=ERRORS,
        summary="Get a webhook by id",
    )
    def get_webhook(webhook_id: str, account_id: str = Depends(current_account)) -> WebhookEnvelope:
        return WebhookEnvelope(result=ctx.webhooks.get(account_id, webhook_id))

    @router.delete(
        "/{webhook_id}/", response_model=Success, responses=ERRORS, summary="Delete a webhook"
    )
    def delete_webhook(
        webhook_id: str, account_id: str = Depends(current_account)
    ) -> dict[str, bool]:
        ctx.webhooks.delete(account_id, webhook_id)
        return {"success": True}

    @router.get(
        "/{webhook_id}/deliveries/",
        response_model=Page[WebhookDeliveryOut],
        responses=ERRORS,
        summary="The webhook's delivery log: each event sent, its status and every attempt",
    )
    def list_deliveries(
        webhook_id: str,
        page: PageRequest = Depends(page_request),
        account_id: str = Depends(current_account),
    ) -> dict[str, Any]:
        return ctx.webhooks.deliveries(account_id, webhook_id, page)

    return router

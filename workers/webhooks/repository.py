"""Webhook queries shared by the outbox writer, the deliverer and the API. All their SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from pmsq.models.webhook import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- endpoints -------------------------------------------------------------------------

    def live_endpoints(self, account_id: str) -> Select[WebhookEndpoint]:
        return select(WebhookEndpoint).where(
            WebhookEndpoint.account_id == account_id, WebhookEndpoint.deleted_at.is_(None)
        )

    def active_endpoints(self, account_id: str) -> Sequence[WebhookEndpoint]:
        """The account's active endpoints, whatever they listen to (an account has a handful)."""
        stmt = self.live_endpoints(account_id).where(WebhookEndpoint.active.is_(True))
        return self.session.scalars(stmt).all()

    def endpoint_for_account(self, endpoint_id: str, account_id: str) -> WebhookEndpoint | None:
        endpoint = self.session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or endpoint.account_id != account_id or endpoint.deleted_at:
            return None
        return endpoint

    # -- deliveries ------------------------------------------------------------------------

    def due_ids(self, now: datetime, limit: int) -> Sequence[str]:
        """PENDING deliveries due by `now`, oldest due first (the status/next_attempt index)."""
        stmt = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        return self.session.scalars(stmt).all()

    def claim(self, delivery_id: str, now: datetime, lease_until: datetime) -> int | None:
        """Start an attempt: the one-row conditional UPDATE only one claimer can win.

        The delivery must be PENDING and due; it gets the next attempt number (the fencing
        token returned) and is hidden from other claimers until `lease_until`.
        """
        stmt = (
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=lease_until)
            .execution_options(synchronize_session=False)
        )
        if self.session.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
            return None
        return self.session.scalar(
            select(WebhookDelivery.attempts).where(WebhookDelivery.id == delivery_id)
        )

    def lock(self, delivery_id: str) -> WebhookDelivery | None:
        stmt = (
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).one_or_none()

    def deliveries_of(self, endpoint_id: str) -> Select[WebhookDelivery]:
        return select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)

    def attempts_of(self, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
        """The delivery log of each delivery, in attempt order."""
        out: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
        if not delivery_ids:
            return out
        stmt = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.attempt, WebhookAttempt.created_at)
        )
        for row in self.session.scalars(stmt):
            out[row.delivery_id].append(row)
        return out

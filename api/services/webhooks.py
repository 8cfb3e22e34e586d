"""Webhook endpoints: register (the secret is shown once), read, list, delete, delivery log."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.pagination import PageRequest, paginate
from pmsq.crypto import CredentialCipher
from pmsq.errors import DestinationRefused, NotFound, ValidationFailed
from pmsq.models.base import iso_z, utcnow
from pmsq.models.webhook import (
    DeliveryStatus,
    PropexoWebhookCreate,
    PropexoWebhookOut,
    PropexoWebhookUpdate,
    WebhookAttempt,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookHeader,
    WebhookOut,
    WebhookTrigger,
)
from pmsq.outbound import DestinationPolicy
from pmsq.workers.webhooks.repository import WebhookRepository

#: Fields the webhook list may be ordered by.
SORTABLE = {
    "created_at": WebhookEndpoint.created_at,
    "updated_at": WebhookEndpoint.updated_at,
    "url": WebhookEndpoint.url,
}
#: Fields the delivery log may be ordered by.
DELIVERY_SORTABLE = {
    "created_at": WebhookDelivery.created_at,
    "status": WebhookDelivery.status,
    "event": WebhookDelivery.event,
}


class WebhookService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        cipher: CredentialCipher,
        destinations: DestinationPolicy,
    ) -> None:
        """`destinations` judges urls as they are registered (the deliverer judges them again
        at every connection)."""
        self._session_factory = session_factory
        self._cipher = cipher
        self._destinations = destinations

    def create(self, account_id: str, spec: WebhookCreate) -> WebhookCreated:
        """Store the endpoint with a new HMAC secret, encrypted; the plain secret is returned
        here and never again. A url known now to lead to a refused address is a 400."""
        try:
            self._destinations.check_url(spec.url)
        except DestinationRefused as exc:
            raise ValidationFailed(
                f"url: {exc.message}", [{"field": "url", "reason": exc.message}]
            ) from None
        secret = secrets.token_urlsafe(32)
        with self._session_factory.begin() as session:
            endpoint = WebhookEndpoint(
                account_id=account_id,
                url=spec.url,
                events=spec.events,
                secret_encrypted=self._cipher.encrypt({"secret": secret}),
                active=True,
                created_at=utcnow(),
            )
            session.add(endpoint)
            session.flush()
            return WebhookCreated(**to_out(endpoint).model_dump(), secret=secret)

    # -- Propexo's webhooks: client-chosen secret, headers, model, answered with the secret --

    def propexo_create(self, account_id: str, spec: PropexoWebhookCreate) -> PropexoWebhookOut:
        """Store the endpoint; its secret is the client's, or a new random one."""
        self._check_url(spec.url)
        secret = spec.secret or secrets.token_urlsafe(32)
        now = utcnow()
        with self._session_factory.begin() as session:
            endpoint = WebhookEndpoint(
                account_id=account_id,
                url=spec.url,
                events=spec.triggers,
                secret_encrypted=self._cipher.encrypt({"secret": secret}),
                active=spec.active,
                headers=[h.model_dump() for h in spec.headers or []],
                model=spec.model,
                created_at=now,
                updated_at=now,
            )
            session.add(endpoint)
            session.flush()
            return self._propexo_out(endpoint)

    def propexo_update(
        self, account_id: str, endpoint_id: str, spec: PropexoWebhookUpdate
    ) -> PropexoWebhookOut:
        """Change what is given; a null field is a 400 (only `model` may be cleared)."""
        changes = spec.model_dump(exclude_unset=True)
        if changes.get("url") is not None:
            self._check_url(changes["url"])
        with self._session_factory.begin() as session:
            endpoint = self._owned(session, account_id, endpoint_id)
            for name, value in changes.items():
                if value is None and name != "model":
                    raise ValidationFailed(
                        f"{name} cannot be null", [{"field": name, "reason": "cannot be null"}]
                    )
                if name == "secret":
                    endpoint.secret_encrypted = self._cipher.encrypt({"secret": value})
                elif name == "triggers":
                    endpoint.events = value
                else:
                    setattr(endpoint, name, value)
            endpoint.updated_at = utcnow()
            session.flush()
            return self._propexo_out(endpoint)

    def propexo_get(self, account_id: str, endpoint_id: str) -> PropexoWebhookOut:
        with self._session_factory() as session:
            return self._propexo_out(self._owned(session, account_id, endpoint_id))

    def propexo_list(
        self, account_id: str, page: PageRequest, active: bool | None
    ) -> dict[str, Any]:
        with self._session_factory() as session:
            stmt = WebhookRepository(session).live_endpoints(account_id)
            if active is not None:
                stmt = stmt.where(WebhookEndpoint.active.is_(active))
            return paginate(
                session,
                stmt,
                page,
                SORTABLE,
                "created_at:desc",
                lambda row: self._propexo_out(row).model_dump(mode="json"),
            )

    def _propexo_out(self, endpoint: WebhookEndpoint) -> PropexoWebhookOut:
        secret = str(self._cipher.decrypt(endpoint.secret_encrypted)["secret"])
        return PropexoWebhookOut(
            id=endpoint.id,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at or endpoint.created_at,
            url=endpoint.url,
            headers=[WebhookHeader.model_validate(h) for h in endpoint.headers or []],
            active=endpoint.active,
            secret=secret,
            system="PRODUCTION",
            triggers=[
                WebhookTrigger(id=f"{endpoint.id}:{name}", trigger=name, model=endpoint.model)
                for name in endpoint.events
            ],
        )

    def _check_url(self, url: str) -> None:
        try:
            self._destinations.check_url(url)
        except DestinationRefused as exc:
            raise ValidationFailed(
                f"url: {exc.message}", [{"field": "url", "reason": exc.message}]
            ) from None

    # -- pmsq's own webhooks (`/v1/admin/webhooks/`) -----------------------------------------

    def get(self, account_id: str, endpoint_id: str) -> WebhookOut:
        with self._session_factory() as session:
            return to_out(self._owned(session, account_id, endpoint_id))

    def list(self, account_id: str, page: PageRequest) -> dict[str, Any]:
        with self._session_factory() as session:
            stmt = WebhookRepository(session).live_endpoints(account_id)
            return paginate(
                session,
                stmt,
                page,
                SORTABLE,
                "created_at:asc",
                lambda row: to_out(row).model_dump(mode="json"),
            )

    def delete(self, account_id: str, endpoint_id: str) -> None:
        """Retire the endpoint: nothing new is queued for it and its pending deliveries fail
        at their next claim. Its rows stay in the store as history; the API no longer shows
        them (the id is 404 from now on)."""
        with self._session_factory.begin() as session:
            endpoint = self._owned(session, account_id, endpoint_id)
            endpoint.deleted_at = utcnow()
            endpoint.active = False

    def deliveries(self, account_id: str, endpoint_id: str, page: PageRequest) -> dict[str, Any]:
        """The endpoint's deliveries, each with its attempts (status code, error, duration)."""
        with self._session_factory() as session:
            self._owned(session, account_id, endpoint_id)
            repo = WebhookRepository(session)
            result = paginate(
                session,
                repo.deliveries_of(endpoint_id),
                page,
                DELIVERY_SORTABLE,
                "created_at:desc",
                delivery_out,
            )
            ids = [row["id"] for row in result["results"]]
            log = repo.attempts_of(ids)
            for row in result["results"]:
                row["attempt_log"] = [attempt_out(a) for a in log[row["id"]]]
            return result

    @staticmethod
    def _owned(session: Session, account_id: str, endpoint_id: str) -> WebhookEndpoint:
        endpoint = WebhookRepository(session).endpoint_for_account(endpoint_id, account_id)
        if endpoint is None:
            raise NotFound(
                f"no webhook with id '{endpoint_id}'",
                [{"field": "webhook_id", "reason": "unknown webhook"}],
            )
        return endpoint


def to_out(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        active=endpoint.active,
        created_at=endpoint.created_at,
    )


def delivery_out(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook_id": delivery.endpoint_id,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": iso_z(delivery.next_attempt_at)
        if delivery.status == DeliveryStatus.PENDING.value
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": iso_z(delivery.created_at),
        "delivered_at": iso_z(delivery.delivered_at),
        "payload": delivery.payload,
    }


def attempt_out(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "duration_ms": round(attempt.duration_ms, 3),
        "created_at": iso_z(attempt.created_at),
    }

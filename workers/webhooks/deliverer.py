"""Sending webhook deliveries: claim -> POST (signed) -> record, with retries and backoff.

Claim and record are short transactions; the POST happens between them with none open. A claim
is a conditional UPDATE that bumps the attempt number and pushes `next_attempt_at` one claim
lease ahead, so of two dispatchers only one sends a delivery, and a sender that dies mid-POST
is replaced after the lease. Record applies only while the row still carries the claim's attempt
number. Delivery is at-least-once: receivers dedupe on `X-Pmsq-Delivery`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.orm import Session, sessionmaker

from pmsq.crypto import CredentialCipher
from pmsq.errors import DestinationRefused
from pmsq.metrics import MetricsRecorder, NullMetrics
from pmsq.models.base import utcnow
from pmsq.models.webhook import DeliveryStatus, WebhookAttempt, WebhookEndpoint
from pmsq.outbound import DestinationPolicy, outbound_client
from pmsq.settings import Settings
from pmsq.workers.backoff import retry_delay_s
from pmsq.workers.webhooks import signing
from pmsq.workers.webhooks.repository import WebhookRepository

logger = logging.getLogger(__name__)

#: Name of the Celery task that attempts one delivery on demand (`pmsq.workers.tasks`).
DELIVER_WEBHOOK_TASK = "pmsq.deliver_webhook"
#: Longest response text kept in the delivery log.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    attempt: int
    event: str
    url: str
    #: The endpoint's HMAC key; lives in memory for one attempt, never logged.
    secret: str
    body: bytes
    #: The endpoint's own headers, `(name, value)`, sent with every attempt.
    extra_headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # keep the secret out of any log or traceback
        return f"Claimed(delivery_id={self.delivery_id!r}, attempt={self.attempt})"


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    duration_ms: float
    #: Trying again cannot succeed (the destination is refused): the delivery fails now.
    final: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookDeliverer:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        cipher: CredentialCipher,
        http: httpx.Client,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._cipher = cipher
        self._http = http
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._metrics = metrics or NullMetrics()

    # -- the passes --------------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Claim and send what is due now; returns how many attempts were made."""
        now = self._clock()
        with self._session_factory() as session:
            due = list(WebhookRepository(session).due_ids(now, self._settings.webhook_batch))
        sent = 0
        for delivery_id in due:
            if self.deliver(delivery_id) is not None:
                sent += 1
        return sent

    def deliver(self, delivery_id: str) -> DeliveryStatus | None:
        """One attempt of `delivery_id` if it is due and nobody else holds it, else None."""
        claimed = self.claim(delivery_id)
        if claimed is None:
            return None
        status = self.record(claimed, self.send(claimed))
        if status is not None:
            outcome = "retry" if status == DeliveryStatus.PENDING else status.value.lower()
            self._metrics.count("pmsq_webhook_attempts", outcome=outcome)
        return status

    # -- steps -------------------------------------------------------------------------------

    def claim(self, delivery_id: str) -> Claimed | None:
        now = self._clock()
        lease_until = now + timedelta(seconds=self._settings.webhook_claim_s)
        with self._session_factory.begin() as session:
            repo = WebhookRepository(session)
            attempt = repo.claim(delivery_id, now, lease_until)
            if attempt is None:
                return None
            delivery = repo.lock(delivery_id)
            assert delivery is not None  # just claimed
            endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
            if endpoint is None or endpoint.deleted_at is not None or not endpoint.active:
                delivery.status = DeliveryStatus.FAILURE.value
                delivery.last_error = "the webhook endpoint was deleted or deactivated"
                delivery.next_attempt_at = None
                return None
            secret = str(self._cipher.decrypt(endpoint.secret_encrypted)["secret"])
            body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
            extra = tuple((str(h["header"]), str(h["value"])) for h in endpoint.headers or [])
            return Claimed(delivery.id, attempt, delivery.event, endpoint.url, secret, body, extra)

    def send(self, claimed: Claimed) -> AttemptResult:
        timestamp = int(self._clock().timestamp())
        headers = {
            **dict(claimed.extra_headers),
            "Content-Type": "application/json",
            "User-Agent": "pmsq-webhooks/1",
            signing.EVENT_HEADER: claimed.event,
            signing.DELIVERY_HEADER: claimed.delivery_id,
            signing.TIMESTAMP_HEADER: str(timestamp),
            signing.SIGNATURE_HEADER: signing.signature(claimed.secret, timestamp, claimed.body),
            signing.PROPEXO_SIGNATURE_HEADER: signing.propexo_signature(
                claimed.secret, claimed.body
            ),
        }
        started = time.monotonic()
        try:
            response = self._http.post(
                claimed.url,
                content=claimed.body,
                headers=headers,
                timeout=self._settings.webhook_timeout_s,
                follow_redirects=False,
            )
        except DestinationRefused as exc:  # refused before connecting: nothing was sent
            elapsed_ms = (time.monotonic() - started) * 1000
            return AttemptResult(None, exc.message[:MAX_ERROR_CHARS], elapsed_ms, final=True)
        except httpx.HTTPError as exc:
            elapsed_ms = (time.monotonic() - started) * 1000
            return AttemptResult(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS], elapsed_ms)
        elapsed_ms = (time.monotonic() - started) * 1000
        error = None
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}: {response.text[:MAX_ERROR_CHARS]}"
        return AttemptResult(response.status_code, error, elapsed_ms)

    def record(self, claimed: Claimed, result: AttemptResult) -> DeliveryStatus | None:
        """Log the attempt; apply its outcome if the claim still holds the delivery."""
        now = self._clock()
        with self._session_factory.begin() as session:
            session.add(
                WebhookAttempt(
                    delivery_id=claimed.delivery_id,
                    attempt=claimed.attempt,
                    status_code=result.status_code,
                    error=result.error,
                    duration_ms=result.duration_ms,
                    created_at=now,
                )
            )
            delivery = WebhookRepository(session).lock(claimed.delivery_id)
            if delivery is None or delivery.status != DeliveryStatus.PENDING.value:
                return None
            if delivery.attempts != claimed.attempt:
                logger.warning(
                    "webhook delivery %s: attempt %d outlived its claim, outcome dropped",
                    claimed.delivery_id,
                    claimed.attempt,
                )
                return None
            delivery.last_status_code = result.status_code
            delivery.last_error = result.error
            if result.ok:
                delivery.status = DeliveryStatus.SUCCESS.value
                delivery.delivered_at = now
                delivery.next_attempt_at = None
            elif result.final or claimed.attempt >= self._settings.webhook_max_attempts:
                delivery.status = DeliveryStatus.FAILURE.value
                delivery.next_attempt_at = None
                logger.warning(
                    "webhook delivery %s (%s) failed after %d attempts: %s",
                    claimed.delivery_id, claimed.event, claimed.attempt, result.error,
                )  # fmt: skip
            else:
                delay_s = self.retry_delay_s(claimed.attempt)
                delivery.next_attempt_at = now + timedelta(seconds=delay_s)
            return DeliveryStatus(delivery.status)

    def retry_delay_s(self, attempt: int) -> float:
        """Delay after failed attempt `attempt` (1-based): exponential, jittered, capped."""
        return retry_delay_s(
            attempt,
            self._settings.webhook_retry_base_s,
            self._settings.webhook_retry_max_s,
            self._rng,
        )


def build_deliverer(
    session_factory: sessionmaker[Session],
    settings: Settings,
    http: httpx.Client,
    clock: Callable[[], datetime] = utcnow,
    metrics: MetricsRecorder | None = None,
) -> WebhookDeliverer:
    return WebhookDeliverer(
        session_factory,
        CredentialCipher(settings.fernet_keys),
        http,
        settings,
        clock,
        metrics=metrics,
    )


class DeliveryLoop:
    """Sends due deliveries every `PMSQ_MAINTENANCE_INTERVAL_S` until stopped.

    It runs on a thread of its own (the worker's `WebhookDeliveryLoop` bootstep), so a slow or
    dead endpoint delays only other webhooks, never job admissions or healing. Passes claim due
    deliveries with a conditional UPDATE, so loops in many workers never send one twice at once.
    The HTTP client is made on the first pass.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._deliverer: WebhookDeliverer | None = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.deliver_once()
            stop.wait(self._settings.maintenance_interval_s)

    def deliver_once(self) -> None:
        try:
            if self._deliverer is None:
                policy = DestinationPolicy.from_settings(self._settings)
                http = outbound_client(policy, timeout_s=self._settings.webhook_timeout_s)
                self._deliverer = build_deliverer(
                    self._session_factory, self._settings, http, self._clock, self._metrics
                )
            self._deliverer.deliver_due()
        except Exception:
            logger.exception("webhook delivery pass failed; the next pass retries")

"""Who listens: an account's active webhook endpoints, as the outbox writer needs them.

A worker records a finished job per write, and the events of each go to the account's
subscribed endpoints; reading them per event cost two queries per write. An account's
endpoints change only with its `webhooks_version` (moved in the transaction of every change,
`pmsq.models.webhook`), so `SubscriptionCache` keeps them per (account, version): whoever reads
the version in its transaction gets exactly the endpoints it would have read there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from pmsq.models.webhook import WebhookEndpoint
from pmsq.workers.copies import VersionedCopies
from pmsq.workers.webhooks.repository import WebhookRepository


@dataclass(frozen=True)
class Subscription:
    """One active endpoint: what it listens for."""

    endpoint_id: str
    events: frozenset[str]
    #: Only events about this model (or about none); every model when None.
    model: str | None

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> Subscription:
        return cls(endpoint.id, frozenset(endpoint.events), endpoint.model)

    def wants(self, event: str, model: str | None) -> bool:
        """Subscribed to `event`; an endpoint's model narrows only events about a model (a
        sync's completion is about none, so every subscriber gets it)."""
        return event in self.events and (model is None or self.model is None or self.model == model)


def subscriptions(session: Session, account_id: str) -> tuple[Subscription, ...]:
    """The account's active endpoints, read now (one query)."""
    endpoints = WebhookRepository(session).active_endpoints(account_id)
    return tuple(Subscription.of(endpoint) for endpoint in endpoints)


class SubscriptionCache:
    """This process's copies of accounts' subscriptions, each with the version it was read at.

    `get` answers from the copy only when the caller read the same `webhooks_version` in its
    transaction; otherwise it reads the endpoints (later than the version, so never older than
    it: a change and its version move commit together) and keeps them under that version. At
    most `MAX_COPIES` accounts are kept, the oldest loaded dropped first.
    """

    def __init__(self) -> None:
        self._copies: VersionedCopies[str, tuple[Subscription, ...]] = VersionedCopies()

    def get(
        self, session: Session, account_id: str, version: int | None
    ) -> tuple[Subscription, ...]:
        found = self._copies.get(account_id, version)
        if found is None:
            found = subscriptions(session, account_id)
            if version is not None:
                self._copies.keep(account_id, version, found)
        return found

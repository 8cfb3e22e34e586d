"""Bearer tokens: one per account, stored only as a SHA-256 digest.

Every request names its account by token, so an API process keeps each token it has seen
valid for `TOKEN_CACHE_S` (`AccountTokens`) instead of reading the token table on every call:
a deleted (revoked) token stops working at most that long after its row is gone, on every
process. A token that fails is never cached: a new token works at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.errors import Unauthorized
from pmsq.models.account import Account, ApiToken

TOKEN_PREFIX = "pmsq_"
#: Seconds an API process trusts a token it has found valid before reading it again: the most
#: a revoked token keeps working.
TOKEN_CACHE_S = 5.0
#: Most tokens one process keeps; past it the cache starts over (a bound on memory, not a
#: policy: every token is read again within `TOKEN_CACHE_S` anyway).
TOKEN_CACHE_MAX = 10_000


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, account_name: str) -> str:
    """A new token for `account_name` (created if new); the plain token is never stored."""
    account = session.scalars(select(Account).where(Account.name == account_name)).one_or_none()
    if account is None:
        account = Account(name=account_name)
        session.add(account)
        session.flush()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(account_id=account.id, token_sha256=token_digest(token)))
    return token


def bearer_digest(authorization: str | None) -> str:
    """The digest of the `Authorization: Bearer ...` header's token; Unauthorized without one."""
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return token_digest(authorization.removeprefix("Bearer ").strip())


def account_of_digest(session: Session, digest: str) -> str:
    """The account id of the token with `digest`, read from the token table."""
    account_id = session.scalars(
        select(ApiToken.account_id).where(ApiToken.token_sha256 == digest)
    ).one_or_none()
    if account_id is None:
        raise Unauthorized("invalid bearer token")
    return account_id


def account_for(session: Session, authorization: str | None) -> str:
    """The account id the `Authorization: Bearer ...` header belongs to (no cache)."""
    return account_of_digest(session, bearer_digest(authorization))


class AccountTokens:
    """Resolves bearer tokens to accounts, trusting a valid token for `ttl_s` (see above).

    Safe to share between the API's threads. `cached` answers from memory only (it does no
    I/O, so it may run on the event loop); `load` reads the token table.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        ttl_s: float = TOKEN_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        #: digest -> (account id, monotonic time the entry stops being trusted)
        self._valid: dict[str, tuple[str, float]] = {}

    def cached(self, authorization: str | None) -> str | None:
        """The account of a token found valid less than `ttl_s` ago, else None; raises
        Unauthorized when there is no bearer token at all."""
        entry = self._valid.get(bearer_digest(authorization))
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def load(self, authorization: str | None) -> str:
        """The token's account read from the database (then cached); Unauthorized if none."""
        digest = bearer_digest(authorization)
        with self._session_factory() as session:
            account_id = account_of_digest(session, digest)
        with self._lock:
            if len(self._valid) >= TOKEN_CACHE_MAX:
                self._valid.clear()
            self._valid[digest] = (account_id, self._clock() + self._ttl_s)
        return account_id

    def account_for(self, authorization: str | None) -> str:
        cached = self.cached(authorization)
        return cached if cached is not None else self.load(authorization)

"""Bearer tokens: one per account, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmsq.errors import Unauthorized
from pmsq.models.account import Account, ApiToken

TOKEN_PREFIX = "pmsq_"


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


def account_for(session: Session, authorization: str | None) -> str:
    """The account id the `Authorization: Bearer ...` header belongs to."""
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    digest = token_digest(authorization.removeprefix("Bearer ").strip())
    account_id = session.scalars(
        select(ApiToken.account_id).where(ApiToken.token_sha256 == digest)
    ).one_or_none()
    if account_id is None:
        raise Unauthorized("invalid bearer token")
    return account_id

"""Bearer tokens as the API resolves them: cached briefly, so revocation takes effect within
`TOKEN_CACHE_S`, never later; a token that fails is never remembered."""

from __future__ import annotations

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.auth import TOKEN_CACHE_S, AccountTokens, create_token, token_digest
from pmsq.errors import Unauthorized
from pmsq.models.account import ApiToken


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def new_token(session_factory: sessionmaker[Session], account: str = "acme") -> str:
    with session_factory.begin() as session:
        return create_token(session, account)


def revoke(session_factory: sessionmaker[Session], token: str) -> None:
    with session_factory.begin() as session:
        session.execute(delete(ApiToken).where(ApiToken.token_sha256 == token_digest(token)))


def test_a_revoked_token_stops_working_once_its_cache_entry_expires(
    session_factory: sessionmaker[Session],
) -> None:
    clock = Clock()
    accounts = AccountTokens(session_factory, clock=clock)
    token = new_token(session_factory)
    account_id = accounts.account_for(f"Bearer {token}")

    revoke(session_factory, token)
    clock.now_s += TOKEN_CACHE_S - 0.01
    assert accounts.account_for(f"Bearer {token}") == account_id  # still trusted from memory

    clock.now_s += 0.02
    assert accounts.cached(f"Bearer {token}") is None
    with pytest.raises(Unauthorized, match="invalid bearer token"):
        accounts.account_for(f"Bearer {token}")


def test_a_failed_token_is_not_remembered(session_factory: sessionmaker[Session]) -> None:
    accounts = AccountTokens(session_factory, clock=Clock())
    with pytest.raises(Unauthorized, match="invalid bearer token"):
        accounts.account_for("Bearer pmsq_unknown")
    assert accounts.cached("Bearer pmsq_unknown") is None


def test_a_missing_or_malformed_header_is_refused_without_a_lookup(
    session_factory: sessionmaker[Session],
) -> None:
    accounts = AccountTokens(session_factory, clock=Clock())
    for header in (None, "", "Basic abc", "bearer lowercase"):
        with pytest.raises(Unauthorized, match="missing bearer token"):
            accounts.cached(header)
        with pytest.raises(Unauthorized, match="missing bearer token"):
            accounts.account_for(header)


def test_each_token_maps_to_its_own_account(session_factory: sessionmaker[Session]) -> None:
    accounts = AccountTokens(session_factory, clock=Clock())
    first, second = new_token(session_factory, "first"), new_token(session_factory, "second")
    ids = {accounts.account_for(f"Bearer {t}") for t in (first, second, first, second)}
    assert len(ids) == 2

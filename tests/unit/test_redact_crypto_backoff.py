"""Secrets stay out of logs, credentials round-trip under rotating keys, retries back off."""

from __future__ import annotations

import random

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from pmsq.crypto import CredentialCipher
from pmsq.errors import PmsqError
from pmsq.pms.redact import REDACTED, Redactor
from pmsq.workers.backoff import retry_delay_s

CREDENTIALS = {
    "api_key": "sk_live_4f9a8b7c",
    "oauth": {"client_secret": "cs-0123456789", "scopes": ["write", "read"]},
    "tokens": ["refresh-abcdef", "ab"],
    "port": 8443,
}

# --- Redactor --------------------------------------------------------------------------------


def test_credential_values_are_scrubbed_from_text_wherever_they_are_nested() -> None:
    redactor = Redactor.for_credentials(CREDENTIALS)
    text = (
        '{"key": "sk_live_4f9a8b7c", "secret": "cs-0123456789"} '
        "retry with refresh-abcdef, then sk_live_4f9a8b7c again"
    )

    scrubbed = redactor.text(text)

    assert scrubbed is not None
    for secret in ("sk_live_4f9a8b7c", "cs-0123456789", "refresh-abcdef"):
        assert secret not in scrubbed
    assert scrubbed.count(REDACTED) == 4
    assert scrubbed.startswith('{"key": "[REDACTED]"')


def test_short_values_and_ordinary_words_are_left_alone() -> None:
    redactor = Redactor.for_credentials(CREDENTIALS)
    # "ab" is a credential leaf but too short to scrub; numbers are not strings.
    assert redactor.text("about a tab") == "about a tab"
    assert redactor.text("port 8443") == "port 8443"
    assert redactor.text(None) is None


def test_a_secret_containing_another_is_scrubbed_whole() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.text("x abcdefgh y abcd") == f"x {REDACTED} y {REDACTED}"


def test_secret_headers_are_redacted_whatever_they_hold_and_others_are_scrubbed() -> None:
    redactor = Redactor.for_credentials(CREDENTIALS)
    headers = {
        "Authorization": "Bearer something-not-in-the-credentials",
        "X-API-Key": "k",
        "Cookie": "session=1",
        "Set-Cookie": "session=2",
        "Proxy-Authorization": "Basic Zm9v",
        "X-Echo": "token=sk_live_4f9a8b7c",
        "Content-Type": "application/json",
    }

    redacted = redactor.headers(headers)

    assert set(redacted) == set(headers)
    for name in ("Authorization", "X-API-Key", "Cookie", "Set-Cookie", "Proxy-Authorization"):
        assert redacted[name] == REDACTED
    assert redacted["X-Echo"] == f"token={REDACTED}"
    assert redacted["Content-Type"] == "application/json"


@given(
    # Outside the marker's own characters, so the marker cannot spell the secret.
    secret=st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.:/+=", min_size=4, max_size=20),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_a_credential_never_survives_redaction(secret: str, before: str, after: str) -> None:
    scrubbed = Redactor.for_credentials({"password": secret}).text(before + secret + after)
    assert scrubbed is not None
    assert secret not in scrubbed


# --- CredentialCipher ------------------------------------------------------------------------


def new_key() -> str:
    return Fernet.generate_key().decode()


def test_credentials_round_trip_and_are_not_stored_in_clear() -> None:
    cipher = CredentialCipher([new_key()])
    token = cipher.encrypt(CREDENTIALS)
    assert b"sk_live_4f9a8b7c" not in token
    assert cipher.decrypt(token) == CREDENTIALS


def test_empty_token_decrypts_to_no_credentials() -> None:
    cipher = CredentialCipher([new_key()])
    assert cipher.decrypt(None) == {}
    assert cipher.decrypt(b"") == {}


def test_rotation_decrypts_old_tokens_and_encrypts_with_the_new_key() -> None:
    old, new = new_key(), new_key()
    old_token = CredentialCipher([old]).encrypt(CREDENTIALS)
    rotated = CredentialCipher([new, old])

    assert rotated.decrypt(old_token) == CREDENTIALS
    new_token = rotated.encrypt(CREDENTIALS)
    assert CredentialCipher([new]).decrypt(new_token) == CREDENTIALS
    with pytest.raises(PmsqError):
        CredentialCipher([old]).decrypt(new_token)


def test_wrong_key_raises_pmsq_error_without_leaking() -> None:
    right, wrong = new_key(), new_key()
    token = CredentialCipher([right]).encrypt(CREDENTIALS)

    with pytest.raises(PmsqError) as raised:
        CredentialCipher([wrong]).decrypt(token)

    error = raised.value
    shown = f"{error} {error!r} {error.details}"
    for leak in (right, wrong, token.decode(), "sk_live_4f9a8b7c"):
        assert leak not in shown
    # `raise ... from None`: no chained exception drags the token into a traceback.
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


def test_a_cipher_needs_at_least_one_key() -> None:
    with pytest.raises(PmsqError):
        CredentialCipher([])


# --- retry backoff ---------------------------------------------------------------------------


class ExtremeRng(random.Random):
    """Always draws the low (or high) end of the jitter range."""

    def __init__(self, high: bool) -> None:
        super().__init__()
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_delays_double_from_the_base_until_the_cap() -> None:
    lows = [retry_delay_s(n, 1.0, 10.0, ExtremeRng(high=False)) for n in range(1, 7)]
    highs = [retry_delay_s(n, 1.0, 10.0, ExtremeRng(high=True)) for n in range(1, 7)]
    assert highs == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert lows == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


@given(
    attempt=st.integers(0, 60),
    base_s=st.floats(0.001, 100.0),
    cap_s=st.floats(0.001, 10_000.0),
    seed=st.integers(0, 2**32),
)
def test_delay_stays_within_half_step_and_step(
    attempt: int, base_s: float, cap_s: float, seed: int
) -> None:
    step = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    delay = retry_delay_s(attempt, base_s, cap_s, random.Random(seed))
    assert step / 2 <= delay <= step
    assert delay <= cap_s


@given(
    attempt=st.integers(1, 40),
    base_s=st.floats(0.001, 10.0),
    cap_s=st.floats(0.001, 1000.0),
    seed=st.integers(0, 2**32),
)
def test_delays_never_shrink_as_attempts_grow_below_the_cap(
    attempt: int, base_s: float, cap_s: float, seed: int
) -> None:
    rng = random.Random(seed)
    # Uncapped, attempt n + 1's least delay is attempt n's greatest.
    if base_s * 2**attempt <= cap_s:
        assert retry_delay_s(attempt + 1, base_s, cap_s, rng) >= retry_delay_s(
            attempt, base_s, cap_s, rng
        )


def test_very_late_attempts_are_capped_not_overflowing() -> None:
    assert retry_delay_s(2000, 1.0, 60.0, ExtremeRng(high=True)) == 60.0

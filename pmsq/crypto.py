"""Credentials at rest: Fernet-encrypted JSON under a rotatable key list (MultiFernet)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from pmsq.errors import PmsqError


class CredentialCipher:
    """Encrypts with the first key, decrypts with any, so keys rotate without downtime."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise PmsqError("PMSQ_SECRET_KEYS holds no key")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, credentials: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(credentials, sort_keys=True).encode())

    def decrypt(self, token: bytes | None) -> dict[str, Any]:
        if not token:
            return {}
        try:
            data: dict[str, Any] = json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise PmsqError("credentials cannot be decrypted with PMSQ_SECRET_KEYS") from None
        return data

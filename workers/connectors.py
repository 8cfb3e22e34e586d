"""Builds the connector for an integration: its vendor profile, decrypted credentials, HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from models.integration import Integration
from pms.connector import Connector
from pms.http_connector import HttpConnector
from pms.profiles import VendorProfile, profile_for
from pmsq.crypto import CredentialCipher
from pmsq.errors import PmsError


@dataclass(frozen=True)
class IntegrationSnapshot:
    """What a job needs of its integration, copied out of the session that loaded it."""

    id: str
    vendor: str
    base_url: str | None
    credentials_encrypted: bytes | None

    @classmethod
    def of(cls, integration: Integration) -> IntegrationSnapshot:
        return cls(
            integration.id,
            integration.integration_vendor,
            integration.base_url,
            integration.credentials_encrypted,
        )


class ConnectorFactory:
    def __init__(self, cipher: CredentialCipher, client: httpx.Client) -> None:
        self._cipher = cipher
        self._client = client

    def build(
        self, integration: IntegrationSnapshot, before_request: Callable[[], None]
    ) -> tuple[Connector, VendorProfile]:
        """The integration's connector; it calls `before_request` before every PMS request."""
        profile = profile_for(integration.vendor)
        if not integration.base_url:
            raise PmsError(f"integration {integration.id} has no base_url", retryable=False)
        connector = HttpConnector(
            base_url=integration.base_url,
            credentials=self._cipher.decrypt(integration.credentials_encrypted),
            profile=profile,
            client=self._client,
            before_request=before_request,
        )
        return connector, profile

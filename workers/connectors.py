"""Builds the connector for an integration through the vendor registry: the vendor's profile,
dialect and credentials model, the decrypted credentials, the outbound HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import httpx

from pmsq.crypto import CredentialCipher
from pmsq.errors import DestinationRefused, PmsError
from pmsq.models.integration import Integration
from pmsq.outbound import host_refusal
from pmsq.pms.connector import Connector
from pmsq.pms.profiles import VendorProfile
from pmsq.pms.registry import VENDORS, Registry


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
    #: Decrypted credentials kept, by ciphertext; the oldest is dropped first, and decrypted
    #: again when next needed.
    MAX_CREDENTIALS = 20_000

    def __init__(
        self,
        cipher: CredentialCipher,
        client: httpx.Client,
        allowed_pms_hosts: frozenset[str] = frozenset(),
        vendors: Registry = VENDORS,
    ) -> None:
        """`client` must be the outbound client (`pmsq.outbound.outbound_client`) outside
        tests; `allowed_pms_hosts` are hosts a fixed-host vendor may use besides its own;
        `vendors` says which vendors exist (the installed ones outside tests)."""
        self._cipher = cipher
        self._client = client
        self._allowed_pms_hosts = allowed_pms_hosts
        self._vendors = vendors
        self._credentials: dict[bytes, Mapping[str, Any]] = {}

    def build(
        self, integration: IntegrationSnapshot, before_request: Callable[[], None]
    ) -> tuple[Connector, VendorProfile]:
        """The integration's connector; it calls `before_request` before every PMS request.

        Raises a final PmsError when the integration cannot be reached as stored (no
        base_url, a refused host, credentials that do not fit its vendor's model)."""
        vendor = self._vendors.get(integration.vendor)
        profile = vendor.profile
        base_url = integration.base_url or default_base_url(profile)
        if not base_url:
            raise PmsError(f"integration {integration.id} has no base_url", retryable=False)
        # Checked again here: the integration may predate the rule, or the setting changed.
        reason = host_refusal(base_url, profile.api_hosts, self._allowed_pms_hosts)
        if reason is not None:
            raise DestinationRefused(f"destination refused: base_url {reason}")
        connector = vendor.connector(
            base_url=base_url,
            credentials=self._decrypted(integration.credentials_encrypted),
            client=self._client,
            before_request=before_request,
        )
        return connector, profile

    def _decrypted(self, token: bytes | None) -> Mapping[str, Any]:
        """The credentials `token` holds, decrypted once per process: a ciphertext always
        decrypts to the same credentials (changed credentials are a new ciphertext), and
        Fernet's HMAC and AES on every job were a measurable share of its cost."""
        if not token:
            return self._cipher.decrypt(token)
        credentials = self._credentials.get(token)
        if credentials is None:
            credentials = MappingProxyType(self._cipher.decrypt(token))
            if len(self._credentials) >= self.MAX_CREDENTIALS:
                del self._credentials[next(iter(self._credentials))]
            self._credentials[token] = credentials
        return credentials


def default_base_url(profile: VendorProfile) -> str | None:
    """The production API root of a vendor with fixed API hosts; None for the others."""
    return f"https://{profile.api_hosts[0]}" if profile.api_hosts else None

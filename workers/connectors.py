"""Builds the connector for an integration through the vendor registry: the vendor's profile,
dialect and credentials model, the decrypted credentials, the outbound HTTP client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from pmsq.crypto import CredentialCipher
from pmsq.errors import DestinationRefused, PmsError
from pmsq.models.integration import Integration
from pmsq.outbound import host_refusal
from pmsq.pms.connector import Connector
from pmsq.pms.profiles import VendorProfile
from pmsq.pms.registry import VENDORS, Registry
from pmsq.pms.vendor import Endpoint
from pmsq.workers.copies import VersionedCopies


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
        #: Each integration's endpoint, under what it is made of (`_endpoint`).
        self._endpoints: VersionedCopies[str, Endpoint] = VersionedCopies()

    def build(
        self, integration: IntegrationSnapshot, before_request: Callable[[], None]
    ) -> tuple[Connector, VendorProfile]:
        """The integration's connector; it calls `before_request` before every PMS request.

        Raises a final PmsError when the integration cannot be reached as stored (no
        base_url, a refused host, credentials that do not fit its vendor's model)."""
        endpoint = self._endpoint(integration)
        return endpoint.connector(self._client, before_request), endpoint.profile

    def _endpoint(self, integration: IntegrationSnapshot) -> Endpoint:
        """The integration's endpoint, made once per process for each version of it: what
        it is made of (vendor, base_url, credentials' ciphertext: changed credentials are a
        new ciphertext) is its version, and the rest (the vendor's hosts, PMSQ_ALLOWED_PMS_HOSTS)
        is fixed in a process, so a kept one is what checking again would make. Fernet's
        HMAC and AES, the credentials' validation and the host check on every job were a
        measurable share of its cost. One that cannot be made is not kept: each job checks
        again, and fails. The destination's address is still checked at every connection
        (`pmsq.outbound.OutboundBackend`)."""
        version = (integration.vendor, integration.base_url, integration.credentials_encrypted)
        endpoint = self._endpoints.get(integration.id, version)
        if endpoint is None:
            endpoint = self._new_endpoint(integration)
            self._endpoints.keep(integration.id, version, endpoint)
        return endpoint

    def _new_endpoint(self, integration: IntegrationSnapshot) -> Endpoint:
        vendor = self._vendors.get(integration.vendor)
        profile = vendor.profile
        base_url = integration.base_url or default_base_url(profile)
        if not base_url:
            raise PmsError(f"integration {integration.id} has no base_url", retryable=False)
        # Checked again here: the integration may predate the rule, or the setting changed.
        reason = host_refusal(base_url, profile.api_hosts, self._allowed_pms_hosts)
        if reason is not None:
            raise DestinationRefused(f"destination refused: base_url {reason}")
        credentials = self._cipher.decrypt(integration.credentials_encrypted)
        return vendor.endpoint(base_url=base_url, credentials=credentials)


def default_base_url(profile: VendorProfile) -> str | None:
    """The production API root of a vendor with fixed API hosts; None for the others."""
    return f"https://{profile.api_hosts[0]}" if profile.api_hosts else None

"""What pmsq knows of one vendor: its profile, its credentials model and its dialect.

A vendor is one `VendorSpec`, declared in its own module: in-tree under `pmsq.pms.vendors`, or
in a separate package that registers it under the `pmsq.vendors` entry point
(`pmsq.pms.registry`). Nothing else in pmsq names a vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic

import httpx
from pydantic import ValidationError

from pmsq.errors import PmsError, ValidationFailed
from pmsq.pms.dialect import C, Dialect
from pmsq.pms.http import PathUrls, PmsHttp
from pmsq.pms.http_connector import HttpConnector
from pmsq.pms.profiles import VendorProfile
from pmsq.pms.redact import Redactor

#: Where credential errors point in an API answer: the integration body's field.
CREDENTIALS_FIELD = "credentials"


@dataclass(frozen=True)
class VendorSpec(Generic[C]):
    """One vendor as the registry holds it; the contract suite runs on every one."""

    profile: VendorProfile
    #: The pydantic model an integration's credentials must fit.
    credentials: type[C]
    #: Builds the vendor's dialect from validated credentials (None: the integration has none).
    dialect: Callable[[C | None], Dialect[Any]]

    @property
    def name(self) -> str:
        """The vendor's name, as integrations store it in `integration_vendor`."""
        return self.profile.vendor

    @property
    def wire_format(self) -> str:
        """What goes over the wire: `generic` (the sandbox's shape, which no real PMS speaks,
        so such an integration can only reach the sandbox) or the vendor's own API."""
        return self.dialect(None).wire_format

    def check_credentials(self, raw: Mapping[str, Any]) -> C:
        """`raw` as the vendor's credentials model.

        Raises ValidationFailed with one detail per problem, its field named
        `credentials.<field>`; neither the message nor the details repeat a submitted value.
        """
        try:
            return self.credentials.model_validate(dict(raw))
        except ValidationError as exc:
            details = [
                {
                    "field": ".".join([CREDENTIALS_FIELD, *(str(part) for part in err["loc"])]),
                    "reason": err["msg"],
                }
                for err in exc.errors(include_input=False, include_url=False)
            ]
            reasons = "; ".join(f"{d['field']}: {d['reason']}" for d in details)
            raise ValidationFailed(
                f"credentials do not fit {self.name}: {reasons}", details
            ) from None

    def endpoint(self, *, base_url: str, credentials: Mapping[str, Any]) -> Endpoint:
        """What every job of one integration version shares: its credentials validated once,
        its dialect and its redactor.

        Empty `credentials` (an integration stored without any) send no auth. Credentials
        that no longer fit the model (stored before it, or by an older version) raise a final
        `PmsError` naming the field: the job fails at once, nothing is sent.
        """
        try:
            model = self.check_credentials(credentials) if credentials else None
        except ValidationFailed as exc:
            raise PmsError(exc.message, retryable=False) from None
        return Endpoint(
            PathUrls(base_url),
            self.profile,
            self.dialect(model),
            Redactor.for_credentials(credentials),
        )

    def connector(
        self,
        *,
        base_url: str,
        credentials: Mapping[str, Any],
        client: httpx.Client,
        before_request: Callable[[], None] | None = None,
    ) -> HttpConnector:
        """A connector for one integration; `before_request` runs before every request.
        Raises as `endpoint` does."""
        endpoint = self.endpoint(base_url=base_url, credentials=credentials)
        return endpoint.connector(client, before_request)


@dataclass(frozen=True)
class Endpoint:
    """One integration version's way to its PMS, the same for each of its jobs: built once
    (`VendorSpec.endpoint`), it spares every job the credentials' validation and the
    redactor's setup, and its URLs are parsed once for all of them. Its dialect only reads
    the credentials it holds, so jobs may share it.
    """

    urls: PathUrls
    profile: VendorProfile
    dialect: Dialect[Any]
    redactor: Redactor

    def connector(
        self, client: httpx.Client, before_request: Callable[[], None] | None = None
    ) -> HttpConnector:
        """A job's connector: `before_request` (the job's pacing hook) runs before every
        request it sends."""
        http = PmsHttp(client, self.redactor, before_request)
        return HttpConnector(
            base_url=self.urls, profile=self.profile, dialect=self.dialect, http=http
        )

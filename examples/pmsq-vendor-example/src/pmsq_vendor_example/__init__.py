"""The EXAMPLE vendor: a profile, a credentials model and a dialect, registered by entry point."""

from __future__ import annotations

import httpx
from pydantic import ConfigDict, Field, SecretStr

from pmsq.pms.dialect import Credentials, GenericDialect
from pmsq.pms.profiles import BOTH, PERSON_FIELDS, ModelSupport, VendorProfile
from pmsq.pms.vendor import VendorSpec


class ExampleCredentials(Credentials):
    """A client id and secret (both kept out of reprs); an unknown field is a typo, so it is
    refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"client_id": "acme-1", "client_secret": "s3cr3t-5678"}]},
    )

    client_id: SecretStr = Field(min_length=4, max_length=64)
    client_secret: SecretStr = Field(min_length=8)


class ExampleDialect(GenericDialect[ExampleCredentials]):
    """pmsq's generic wire shape, with this PMS's own auth headers and error shape."""

    def auth_headers(self) -> dict[str, str]:
        if self.credentials is None:
            return {}
        return {
            "X-Client-Id": self.credentials.client_id.get_secret_value(),
            "X-Client-Secret": self.credentials.client_secret.get_secret_value(),
        }

    def error_message(self, response: httpx.Response) -> str:
        try:
            errors = response.json()["errors"]
            return "; ".join(str(error["message"]) for error in errors)
        except (ValueError, KeyError, TypeError):
            return super().error_message(response)


PROFILE = VendorProfile(
    "EXAMPLE",
    {"residents": ModelSupport(BOTH, PERSON_FIELDS | {"notes"})},
    supports_idempotency_key=True,
)

VENDOR = VendorSpec(PROFILE, ExampleCredentials, ExampleDialect)

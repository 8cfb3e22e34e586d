"""An integration's credentials are checked against its vendor's credentials model when it is
created or updated, on SQLite and PostgreSQL: a misfit is a 400 in the API's error shape naming
`credentials.<field>`, never repeating a submitted value, and nothing is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import httpx
import pytest
from pydantic import ConfigDict, SecretStr
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness
from support.outbound import StubDns

from pmsq.api.services.integrations import IntegrationService
from pmsq.crypto import CredentialCipher
from pmsq.errors import ValidationFailed
from pmsq.models.account import Account
from pmsq.models.integration import Integration
from pmsq.models.schemas import IntegrationCreate, IntegrationUpdate
from pmsq.outbound import DestinationPolicy
from pmsq.pms.dialect import Credentials, GenericDialect
from pmsq.pms.profiles import BOTH, PERSON_FIELDS, ModelSupport, VendorProfile
from pmsq.pms.registry import VENDORS, Registry
from pmsq.pms.vendor import VendorSpec
from pmsq.settings import DEV_SECRET_KEY
from pmsq.workers.flow.redis_backend import RedisFlowControl

PATH = "/v1/admin/integrations/"


@pytest.fixture
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[ApiHarness]:
    with api_harness(database_url, session_factory) as harness:
        yield harness


def secret() -> str:
    return f"SECRET-{uuid.uuid4().hex}"


def assert_refused(response: httpx.Response, field: str, *secrets: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in {detail["field"] for detail in error["details"]["fields"]}, error
    assert field in error["message"]
    assert [s for s in secrets if s in response.text] == []


def body(vendor: str = "SANDBOX", **extra: Any) -> dict[str, Any]:
    return {"name": "n", "integration_vendor": vendor, **extra}


@pytest.mark.parametrize("vendor", VENDORS.names())
def test_a_create_with_credentials_that_do_not_fit_is_refused_naming_the_field(
    api: ApiHarness, vendor: str
) -> None:
    headers = api.token(f"acct-{uuid.uuid4().hex[:8]}")
    key, other = secret(), secret()
    # Buildium's credentials are a client id and secret; every other vendor's a key.
    field, second = (
        ("client_id", "client_secret") if vendor == "BUILDIUM" else ("api_key", "password")
    )
    misfits = [
        {field: [key]},  # not a string
        {second: other},  # no key at all
        {field: f" {key}\n", second: other},  # unusable in a header
    ]

    for credentials in misfits:
        refused = api.client.post(PATH, json=body(vendor, credentials=credentials), headers=headers)
        assert_refused(refused, f"credentials.{field}", key, other)

    assert api.client.get(PATH, headers=headers).json()["results"] == []


def test_credentials_stored_under_their_older_name_are_accepted(api: ApiHarness) -> None:
    headers = api.token(f"acct-{uuid.uuid4().hex[:8]}")
    response = api.client.post(PATH, json=body(credentials={"token": secret()}), headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["result"]["has_credentials"] is True


def test_an_update_with_credentials_that_do_not_fit_keeps_the_stored_ones(
    api: ApiHarness,
) -> None:
    headers = api.token(f"acct-{uuid.uuid4().hex[:8]}")
    stored = {"api_key": secret()}
    created = api.client.post(PATH, json=body(credentials=stored), headers=headers)
    assert created.status_code == 200, created.text
    integration_id = created.json()["result"]["id"]
    bad = secret()

    response = api.client.put(
        f"{PATH}{integration_id}/",
        json={"credentials": {"api_key": 12345, "password": bad}, "name": "renamed"},
        headers=headers,
    )

    assert_refused(response, "credentials.api_key", bad, stored["api_key"])
    with api.session_factory() as session:
        row = session.get(Integration, integration_id)
        assert row is not None and row.name == "n"
        assert CredentialCipher([DEV_SECRET_KEY]).decrypt(row.credentials_encrypted) == stored


def test_an_unknown_vendor_is_refused_naming_the_field_on_create_and_update(
    api: ApiHarness,
) -> None:
    headers = api.token(f"acct-{uuid.uuid4().hex[:8]}")
    assert_refused(api.client.post(PATH, json=body("NOPE"), headers=headers), "integration_vendor")
    created = api.client.post(PATH, json=body(), headers=headers)
    path = f"{PATH}{created.json()['result']['id']}/"

    refused = api.client.put(path, json={"integration_vendor": "sandbox"}, headers=headers)

    assert_refused(refused, "integration_vendor")
    assert (
        api.client.get(path, headers=headers).json()["results"]["integration_vendor"] == "SANDBOX"
    )


# -- a vendor whose credentials differ: switching to it checks the credentials kept --------------


class ClientCredentials(Credentials):
    model_config = ConfigDict(extra="forbid")

    client_id: SecretStr
    client_secret: SecretStr


class ClientDialect(GenericDialect[ClientCredentials]):
    def auth_headers(self) -> dict[str, str]:
        return {}


CLIENT_VENDOR = VendorSpec(
    VendorProfile("CLIENTS", {"residents": ModelSupport(BOTH, PERSON_FIELDS)}),
    ClientCredentials,
    ClientDialect,
)


@pytest.fixture
def service(session_factory: sessionmaker[Session]) -> IntegrationService:
    return IntegrationService(
        session_factory,
        CredentialCipher([DEV_SECRET_KEY]),
        RedisFlowControl(fakeredis.FakeRedis()),
        rate_margin_ms=20,
        destinations=DestinationPolicy(resolver=StubDns()),
        vendors=Registry([*VENDORS, CLIENT_VENDOR]),
    )


def test_switching_vendor_checks_the_kept_credentials_against_the_new_model(
    service: IntegrationService, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        row = Account(name=f"acct-{uuid.uuid4().hex[:8]}")
        session.add(row)
        session.flush()
        account = row.id
    key = secret()
    created = service.create(
        account,
        IntegrationCreate(name="n", integration_vendor="SANDBOX", credentials={"api_key": key}),
    )

    with pytest.raises(ValidationFailed) as raised:
        service.update(account, created.id, IntegrationUpdate(integration_vendor="CLIENTS"))
    fields = {detail["field"] for detail in raised.value.details}
    assert fields == {"credentials.api_key", "credentials.client_id", "credentials.client_secret"}
    assert key not in raised.value.message + repr(raised.value.details)
    assert service.get(account, created.id).integration_vendor == "SANDBOX"

    new = {"client_id": secret(), "client_secret": secret()}
    switched = service.update(
        account, created.id, IntegrationUpdate(integration_vendor="CLIENTS", credentials=new)
    )
    assert (switched.integration_vendor, switched.has_credentials) == ("CLIENTS", True)

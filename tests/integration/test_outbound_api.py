"""Outbound destinations through the admin API, on SQLite and PostgreSQL: a refused base_url or
webhook url is a 400 naming the field; one that becomes refused later fails the job finally, with
the refusal in its log and nothing sent; vendors with fixed API hosts keep to them.

The API runs with `PMSQ_ALLOWED_OUTBOUND_NETWORKS` empty (the default) unless a test says
otherwise; names resolve through a stub table (no real DNS), and the only servers are loopback
servers that count the connections they accept.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness
from support.outbound import CountingServer, StubDns, counting_server

from pmsq.crypto import CredentialCipher
from pmsq.models.integration import Integration
from pmsq.models.webhook import WebhookEndpoint
from pmsq.outbound import DestinationPolicy, outbound_client, parse_hosts
from pmsq.settings import Settings
from pmsq.workers.connectors import ConnectorFactory
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.runner import JobRunner

INTERNAL_NAME = "pms.internal.test"


@pytest.fixture
def dns() -> StubDns:
    return StubDns({INTERNAL_NAME: ["10.0.0.5"]})


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with counting_server() as listening:
        yield listening


@pytest.fixture
def api(
    database_url: str, session_factory: sessionmaker[Session], dns: StubDns
) -> Iterator[ApiHarness]:
    """The API with the default outbound settings: nothing internal allowed."""
    with api_harness(
        database_url,
        session_factory,
        resolver=dns,
        allowed_outbound_networks="",
        allowed_pms_hosts="",
    ) as harness:
        yield harness


def account(api: ApiHarness) -> dict[str, str]:
    return api.token(f"acct-{uuid.uuid4().hex[:12]}")


def integration_body(vendor: str = "SANDBOX", **extra: Any) -> dict[str, Any]:
    credentials = (
        {"client_id": "client-0123", "client_secret": "secret-0123456789"}
        if vendor == "BUILDIUM"
        else {"api_key": "key-0123456789"}
    )
    return {
        "name": "pms",
        "integration_vendor": vendor,
        "active": True,
        "credentials": credentials,
        "max_request_frequency": 1000,
        **extra,
    }


def refused_urls(server: CountingServer) -> list[tuple[str, str]]:
    """(url, the word the refusal must name), one per refused class."""
    return [
        (server.url("/t/x"), "127.0.0.1 is loopback"),
        ("http://10.0.0.7:8080/t/x", "10.0.0.7 is private"),
        ("http://192.168.1.20/t/x", "192.168.1.20 is private"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
        (f"http://[::1]:{server.port}/t/x", "::1 is loopback"),
        ("http://[fd00::1]/t/x", "fd00::1 is unique-local"),
        (f"http://{INTERNAL_NAME}/t/x", f"{INTERNAL_NAME} resolves to 10.0.0.5"),
    ]


def assert_refused(response: Any, field: str, word: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    ((detail),) = error["details"]["fields"]
    assert detail["field"] == field and word in detail["reason"], detail


# -- at creation ---------------------------------------------------------------------------------


def test_integration_with_a_refused_base_url_is_a_400_naming_it(
    api: ApiHarness, server: CountingServer
) -> None:
    headers = account(api)
    for url, word in refused_urls(server):
        body = integration_body(base_url=url)
        response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
        assert_refused(response, "base_url", word)
    listed = api.client.get("/v1/admin/integrations/", headers=headers).json()
    assert listed["results"] == []
    assert server.connections == []


def test_webhook_with_a_refused_url_is_a_400_naming_it(
    api: ApiHarness, server: CountingServer
) -> None:
    headers = account(api)
    for url, word in refused_urls(server):
        body = {"url": url, "events": ["JOB_FAILURE"]}
        assert_refused(
            api.client.post("/v1/admin/webhooks/", json=body, headers=headers), "url", word
        )
    assert api.client.get("/v1/admin/webhooks/", headers=headers).json()["results"] == []
    assert server.connections == []


def test_update_to_a_refused_base_url_is_a_400_and_changes_nothing(api: ApiHarness) -> None:
    headers = account(api)
    body = integration_body(base_url="https://pms.acme.test/t/x")  # not in DNS yet: accepted
    created = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert created.status_code == 200, created.text
    integration_id = created.json()["result"]["id"]
    path = f"/v1/admin/integrations/{integration_id}/"
    metadata = {"base_url": "http://169.254.169.254/latest/meta-data/"}
    assert_refused(api.client.put(path, json=metadata, headers=headers), "base_url", "link-local")
    fetched = api.client.get(path, headers=headers).json()["results"]
    assert fetched["base_url"] == "https://pms.acme.test/t/x"


def test_loopback_is_accepted_when_the_operator_allows_it(
    database_url: str, session_factory: sessionmaker[Session], server: CountingServer
) -> None:
    """The control of the refusals above: the same requests with 127.0.0.0/8 allowed."""
    with api_harness(database_url, session_factory, allowed_outbound_networks="127.0.0.0/8") as api:
        headers = account(api)
        body = integration_body(base_url=server.url("/t/x"))
        response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
        assert response.status_code == 200, response.text
        hook = {"url": server.url("/hook"), "events": ["JOB_FAILURE"]}
        assert api.client.post("/v1/admin/webhooks/", json=hook, headers=headers).status_code == 201
        assert_refused(
            api.client.post(
                "/v1/admin/webhooks/",
                json={"url": "http://169.254.169.254/", "events": ["JOB_FAILURE"]},
                headers=headers,
            ),
            "url",
            "link-local",
        )


# -- vendors with fixed API hosts ------------------------------------------------------------------


def test_fixed_host_vendors_need_no_base_url_and_keep_to_their_hosts(api: ApiHarness) -> None:
    headers = account(api)
    post = lambda body: api.client.post("/v1/admin/integrations/", json=body, headers=headers)  # noqa: E731
    plain = post(integration_body("BUILDIUM"))
    assert plain.status_code == 200, plain.text
    assert plain.json()["result"]["base_url"] is None
    sandbox = post(integration_body("BUILDIUM", base_url="https://apisandbox.buildium.com/v1"))
    assert sandbox.status_code == 200, sandbox.text
    elsewhere = integration_body("BUILDIUM", base_url="https://pms.acme.test/v1")
    assert_refused(post(elsewhere), "base_url", "not one of this vendor's API hosts")
    # A vendor without fixed hosts takes it; switching that integration to Buildium does not.
    other = post(integration_body("SANDBOX", base_url="https://pms.acme.test/v1"))
    assert other.status_code == 200, other.text
    path = f"/v1/admin/integrations/{other.json()['result']['id']}/"
    switched = api.client.put(path, json={"integration_vendor": "BUILDIUM"}, headers=headers)
    assert_refused(switched, "base_url", "api.buildium.com")
    assert api.client.get(path, headers=headers).json()["results"]["vendor"] == "SANDBOX"


def test_allowed_pms_hosts_open_a_fixed_host_vendor_to_a_sandbox(
    database_url: str, session_factory: sessionmaker[Session]
) -> None:
    with api_harness(database_url, session_factory, allowed_pms_hosts="pms.acme.test") as api:
        body = integration_body("BUILDIUM", base_url="https://pms.acme.test/v1")
        headers = account(api)
        response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
        assert response.status_code == 200, response.text


# -- at send time ----------------------------------------------------------------------------------


def run_job(api: ApiHarness, database_url: str, job_id: str, dns: StubDns, **settings: str) -> str:
    """Runs the QUEUED job once as a worker would, through the real connector and the outbound
    client built from `settings`."""
    config = Settings(database_url=database_url, max_attempts=3, **settings)  # type: ignore[arg-type]
    http = outbound_client(DestinationPolicy.from_settings(config, dns), timeout_s=5)
    connectors = ConnectorFactory(
        CredentialCipher(config.fernet_keys), http, parse_hosts(config.allowed_pms_hosts)
    )
    dispatcher = Dispatcher(api.session_factory, api.publisher, api.flow, config)
    try:
        status = JobRunner(api.session_factory, connectors, dispatcher, config).run(job_id)
    finally:
        http.close()
    assert status is not None, f"job {job_id} was not QUEUED"
    return status.value


def integration_resolving_later(
    api: ApiHarness, server: CountingServer
) -> tuple[dict[str, str], str]:
    """An integration on a name that does not resolve when it is saved."""
    headers = account(api)
    body = integration_body(base_url=f"http://pms.later.test:{server.port}/t/x")
    created = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert created.status_code == 200, created.text
    return headers, str(created.json()["result"]["id"])


def write(api: ApiHarness, headers: dict[str, str], integration_id: str) -> str:
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    response = api.client.post("/v1/residents/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


def test_a_destination_refused_only_later_fails_the_job_finally_and_sends_nothing(
    api: ApiHarness, database_url: str, dns: StubDns, server: CountingServer
) -> None:
    headers, integration_id = integration_resolving_later(api, server)
    dns.names["pms.later.test"] = ["127.0.0.1"]  # now it points at the deployment itself
    job_id = write(api, headers, integration_id)
    assert run_job(api, database_url, job_id, dns, allowed_outbound_networks="") == "FAILURE"
    assert server.connections == []
    (entry,) = api.client.get(f"/v1/admin/logs/jobs/{job_id}", headers=headers).json()["results"]
    assert entry["attempts"] == 1, "final: not retried"
    assert "pms.later.test resolves to 127.0.0.1" in entry["error"]
    (log,) = entry["logs"]
    assert log["response_status"] is None
    assert "127.0.0.1 is loopback" in log["error"]
    data = api.client.get(f"/v1/admin/job-logs/{log['id']}/data", headers=headers).json()
    assert (data["response"]["status"], data["response"]["body"]) == (None, None)
    assert "destination refused" in data["error"]


def test_the_same_job_reaches_an_allowed_destination(
    api: ApiHarness, database_url: str, dns: StubDns, server: CountingServer
) -> None:
    """The control of the test above: with loopback allowed, the write arrives."""
    headers, integration_id = integration_resolving_later(api, server)
    dns.names["pms.later.test"] = ["127.0.0.1"]
    job_id = write(api, headers, integration_id)
    settings = {"allowed_outbound_networks": "127.0.0.0/8"}
    assert run_job(api, database_url, job_id, dns, **settings) == "SUCCESS"
    assert server.requests == [("POST", "/t/x/residents")]


def test_a_fixed_host_vendor_moved_off_its_hosts_fails_finally_without_a_request(
    api: ApiHarness, database_url: str, dns: StubDns, server: CountingServer
) -> None:
    """An integration saved before the rule (or under another PMSQ_ALLOWED_PMS_HOSTS)."""
    headers = account(api)
    created = api.client.post(
        "/v1/admin/integrations/", json=integration_body("BUILDIUM"), headers=headers
    )
    integration_id = created.json()["result"]["id"]
    with api.session_factory.begin() as session:
        row = session.get(Integration, integration_id)
        assert row is not None
        row.base_url = server.url("/t/x")
    job_id = write(api, headers, integration_id)
    settings = {"allowed_outbound_networks": "127.0.0.0/8"}
    assert run_job(api, database_url, job_id, dns, **settings) == "FAILURE"
    (entry,) = api.client.get(f"/v1/admin/logs/jobs/{job_id}", headers=headers).json()["results"]
    assert "not one of this vendor's API hosts" in entry["error"]
    assert server.connections == []


def test_webhook_rows_keep_no_refused_url(api: ApiHarness) -> None:
    """Nothing half-made: a refused webhook leaves no endpoint row behind."""
    headers = account(api)
    body = {"url": "http://169.254.169.254/", "events": ["JOB_FAILURE"]}
    assert api.client.post("/v1/admin/webhooks/", json=body, headers=headers).status_code == 400
    with api.session_factory() as session:
        urls = list(session.scalars(select(WebhookEndpoint.url)))
    assert "http://169.254.169.254/" not in urls


def test_a_url_that_cannot_be_sent_is_a_400_not_a_500(api: ApiHarness) -> None:
    headers = account(api)
    hook = {"url": "http://[::1/hooks", "events": ["JOB_FAILURE"]}
    assert_refused(
        api.client.post("/v1/admin/webhooks/", json=hook, headers=headers), "url", "valid"
    )
    body = integration_body(base_url="http://[::1/t/x")
    response = api.client.post("/v1/admin/integrations/", json=body, headers=headers)
    assert_refused(response, "base_url", "not a valid URL")

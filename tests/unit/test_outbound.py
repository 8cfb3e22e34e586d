"""The outbound destination policy at send time: which addresses are refused, and that a refused
destination is never connected to (PMS calls through the connector, webhook deliveries).

Every server here listens on a loopback address and counts the connections it accepts; names
resolve through a stub table. Addresses that no test server can listen on (RFC 1918, link-local,
unique-local) are checked with `socket.create_connection` replaced by a recorder: no socket may be
opened at all.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.outbound import StubDns, counting_server, self_signed_certificate

from pmsq.crypto import CredentialCipher
from pmsq.errors import DestinationRefused, PmsError
from pmsq.models.enums import Vendor
from pmsq.outbound import DestinationPolicy, OutboundTransport, outbound_client, parse_networks
from pmsq.pms.connector import Exchange, Step
from pmsq.pms.http_connector import HttpConnector
from pmsq.pms.profiles import CREATE
from pmsq.pms.registry import VENDORS
from pmsq.settings import DEV_SECRET_KEY, Settings
from pmsq.workers.connectors import ConnectorFactory, IntegrationSnapshot

LOOPBACK_ONLY = parse_networks("127.0.0.0/8")
STEP = Step("residents", CREATE, None, {"last_name": "Lovelace"}, "idem-key-1")
#: (address, the word the refusal must name)
REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("240.0.0.1", "240.0.0.1 is"),  # reserved (Python files it under private as well)
    ("100.64.0.1", "non-public"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "127.0.0.1 is loopback"),
    ("::ffff:169.254.169.254", "169.254.169.254 is link-local"),
    ("64:ff9b::a00:1", "10.0.0.1 is private"),
]


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replaces `socket.create_connection` (what httpcore connects with) by a recorder."""
    opened: list[Any] = []

    def record(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        raise OSError("test: no socket may be opened here")

    monkeypatch.setattr(socket, "create_connection", record)
    return opened


def client(policy: DestinationPolicy, **options: Any) -> httpx.Client:
    http = outbound_client(policy, timeout_s=5)
    http.follow_redirects = options.get("follow_redirects", False)
    return http


@pytest.fixture
def ipv6_loopback() -> Iterator[None]:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    yield


# -- the policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "word"), REFUSED)
def test_non_public_addresses_are_refused_by_default(address: str, word: str) -> None:
    reason = DestinationPolicy().refusal(address)
    assert reason is not None and word in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert DestinationPolicy().refusal(address) is None


def test_allowed_networks_open_exactly_themselves() -> None:
    policy = DestinationPolicy(parse_networks("127.0.0.0/8, 10.20.0.0/16"))
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # the same address, IPv4-mapped
    assert policy.refusal("10.20.3.4") is None
    assert policy.refusal("10.21.0.1") is not None
    assert policy.refusal("::1") is not None  # IPv6 loopback is not in 127.0.0.0/8
    assert policy.refusal("169.254.169.254") is not None


def test_a_bad_cidr_setting_fails_at_start() -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        Settings(allowed_outbound_networks="127.0.0.0/8,not-a-network")
    assert Settings().allowed_outbound_networks == "", "the default allows nothing internal"


def test_check_url_judges_literals_and_resolved_names_but_lets_unknown_names_through() -> None:
    dns = StubDns({"pms.internal.test": ["10.9.8.7"], "pms.public.test": ["93.184.216.34"]})
    policy = DestinationPolicy(resolver=dns)
    internal = re.escape("pms.internal.test resolves to 10.9.8.7")
    with pytest.raises(DestinationRefused, match=internal):
        policy.check_url("https://pms.internal.test/api")
    with pytest.raises(DestinationRefused, match=re.escape("169.254.169.254 is link-local")):
        policy.check_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(DestinationRefused, match="loopback"):
        policy.check_url("http://[::1]:8080/x")
    policy.check_url("https://pms.public.test/api")
    policy.check_url("https://not-yet-in-dns.test/api")  # judged again at connect time
    with pytest.raises(DestinationRefused, match="not a valid URL"):
        policy.check_url("http://[::1/x")
    assert dns.lookups == ["pms.internal.test", "pms.public.test", "not-yet-in-dns.test"]


def test_a_name_with_any_refused_address_is_refused() -> None:
    dns = StubDns({"mixed.test": ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(DestinationRefused, match=re.escape("10.0.0.1 is private")):
        DestinationPolicy(resolver=dns).check_url("http://mixed.test/")


# -- at send time: nothing reaches a refused destination ------------------------------------------


def test_loopback_is_refused_at_connect_and_no_connection_reaches_the_server() -> None:
    with counting_server() as server:
        with client(DestinationPolicy()) as http, pytest.raises(DestinationRefused):
            http.get(server.url("/x"))
        assert server.connections == []
        # The control: allowed, the same request reaches it.
        with client(DestinationPolicy(LOOPBACK_ONLY)) as http:
            assert http.get(server.url("/x")).status_code == 200
        assert server.requests == [("GET", "/x")]


def test_ipv6_loopback_is_refused_at_connect(ipv6_loopback: None) -> None:
    with counting_server("::1") as server:
        with client(DestinationPolicy()) as http, pytest.raises(DestinationRefused, match="::1"):
            http.get(server.url("/x"))
        assert server.connections == []
        with client(DestinationPolicy(parse_networks("::1/128"))) as http:
            assert http.get(server.url("/x")).status_code == 200
        assert len(server.connections) == 1


def test_a_name_resolving_to_loopback_is_refused_and_connected_to_by_address() -> None:
    dns = StubDns({"pms.acme.test": ["127.0.0.1"]})
    with counting_server() as server:
        url = f"http://pms.acme.test:{server.port}/x"
        refused = re.escape("pms.acme.test resolves to 127.0.0.1")
        with (
            client(DestinationPolicy(resolver=dns)) as http,
            pytest.raises(DestinationRefused, match=refused),
        ):
            http.get(url)
        assert server.connections == []
        with client(DestinationPolicy(LOOPBACK_ONLY, dns)) as http:
            assert http.get(url).status_code == 200
        assert server.requests == [("GET", "/x")]


def test_dns_rebinding_is_judged_on_the_address_connected_to() -> None:
    """The name looked public when it was saved; at connect time it answers loopback."""
    dns = StubDns({"rebind.test": ["93.184.216.34"]})
    policy = DestinationPolicy(resolver=dns)
    with counting_server() as server:
        url = f"http://rebind.test:{server.port}/x"
        policy.check_url(url)  # accepted when saved
        dns.names["rebind.test"] = ["127.0.0.1"]
        loopback = re.escape("127.0.0.1 is loopback")
        with client(policy) as http, pytest.raises(DestinationRefused, match=loopback):
            http.get(url)
        assert server.connections == []


def test_a_name_with_one_refused_address_among_allowed_ones_is_not_connected_to() -> None:
    dns = StubDns({"mixed.test": ["127.0.0.1", "10.0.0.1"]})
    with counting_server() as server:
        refused = re.escape("10.0.0.1")
        with (
            client(DestinationPolicy(LOOPBACK_ONLY, dns)) as http,
            pytest.raises(DestinationRefused, match=refused),
        ):
            http.get(f"http://mixed.test:{server.port}/x")
        assert server.connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3:8080/t/x",
        "http://192.168.0.10/t/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fc00::5]:8080/t/x",
        "http://[fe80::1]/t/x",
        "http://pms.internal.test/t/x",  # resolves to 10.0.0.5
    ],
)
def test_unreachable_internal_destinations_open_no_socket(url: str, no_sockets: list[Any]) -> None:
    dns = StubDns({"pms.internal.test": ["10.0.0.5"]})
    with client(DestinationPolicy(resolver=dns)) as http, pytest.raises(DestinationRefused):
        http.get(url)
    assert no_sockets == []


def test_an_allowed_destination_does_open_a_socket(no_sockets: list[Any]) -> None:
    """The control of the test above: its recorder does see connections that are allowed."""
    policy = DestinationPolicy(parse_networks("10.0.0.0/8"))
    with client(policy) as http, pytest.raises(httpx.ConnectError):
        http.get("http://10.1.2.3:8080/t/x")
    assert no_sockets == [("10.1.2.3", 8080)]


def test_a_name_that_does_not_resolve_is_a_retryable_connect_error() -> None:
    policy = DestinationPolicy(resolver=StubDns())
    with client(policy) as http, pytest.raises(httpx.ConnectError, match="cannot resolve"):
        http.get("http://nowhere.test/x")


def test_redirects_are_not_followed_by_the_outbound_client() -> None:
    with counting_server("127.0.0.2") as target:
        with counting_server(status=302, headers={"Location": target.url("/in")}) as origin:
            with client(DestinationPolicy(parse_networks("127.0.0.1/32"))) as http:
                assert http.follow_redirects is False
                response = http.get(origin.url("/out"))
            assert response.status_code == 302
        assert target.connections == []


def test_the_outbound_client_keeps_no_cookie_from_one_request_to_the_next() -> None:
    # One client serves every account: a PMS session cookie kept for one integration would
    # go out with another integration's requests to the same host.
    with (
        counting_server(headers={"Set-Cookie": "session=tenant-a; Path=/"}) as pms,
        client(DestinationPolicy(parse_networks("127.0.0.1/32"))) as http,
    ):
        http.get(pms.url("/a"))
        second = http.get(pms.url("/b"))
        assert len(http.cookies) == 0
    assert "cookie" not in second.request.headers


def test_a_followed_redirect_to_a_refused_address_is_refused_at_connect() -> None:
    """Even a client told to follow redirects connects through the policy at every hop."""
    with counting_server("127.0.0.2") as target:
        with counting_server(status=302, headers={"Location": target.url("/in")}) as origin:
            policy = DestinationPolicy(parse_networks("127.0.0.1/32"))
            refused = re.escape("127.0.0.2")
            with (
                client(policy, follow_redirects=True) as http,
                pytest.raises(DestinationRefused, match=refused),
            ):
                http.get(origin.url("/out"))
            assert origin.requests == [("GET", "/out")]
        assert target.connections == []


# -- PMS calls ---------------------------------------------------------------------------------


def connector_for(base_url: str, http: httpx.Client) -> HttpConnector:
    return VENDORS.get(Vendor.SANDBOX.value).connector(
        base_url=base_url, credentials={"api_key": "key-0123456789"}, client=http
    )


def test_a_pms_call_to_a_refused_address_fails_finally_and_logs_the_refusal() -> None:
    log: list[Exchange] = []
    step = STEP
    with counting_server() as server, client(DestinationPolicy()) as http:
        with pytest.raises(DestinationRefused) as raised:
            connector_for(server.url("/t/acme"), http).execute(step, log.append)
        assert server.connections == []
    assert isinstance(raised.value, PmsError) and raised.value.retryable is False
    (exchange,) = log
    assert exchange.response_status is None and exchange.response_body is None
    assert exchange.error is not None and "127.0.0.1 is loopback" in exchange.error


def test_a_pms_redirect_is_an_answer_not_a_hop() -> None:
    step = STEP
    with counting_server("127.0.0.2") as target:
        location = {"Location": target.url("/steal")}
        policy = DestinationPolicy(parse_networks("127.0.0.1/32"))
        with (
            counting_server(status=302, headers=location) as origin,
            client(policy) as http,
            pytest.raises(PmsError, match="302") as raised,
        ):
            connector_for(origin.url("/t/acme"), http).execute(step, lambda _: None)
        assert raised.value.retryable is False
        assert target.connections == []


def snapshot(vendor: Vendor, base_url: str | None) -> IntegrationSnapshot:
    cipher = CredentialCipher([DEV_SECRET_KEY])
    credentials = (
        {"client_id": "id", "client_secret": "s"} if vendor is Vendor.BUILDIUM else {"api_key": "k"}
    )
    return IntegrationSnapshot("int-1", vendor.value, base_url, cipher.encrypt(credentials))


def test_fixed_host_vendors_use_their_host_and_refuse_others() -> None:
    seen: list[str] = []

    def pms(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(201, json={"Id": 1})

    http = httpx.Client(transport=httpx.MockTransport(pms))  # no network at all
    cipher = CredentialCipher([DEV_SECRET_KEY])
    step = STEP
    factory = ConnectorFactory(cipher, http)
    connector, _ = factory.build(snapshot(Vendor.BUILDIUM, None), lambda: None)
    connector.execute(step, lambda _: None)
    assert seen == ["https://api.buildium.com/v1/leases/tenants"]
    sandbox = "https://apisandbox.buildium.com/v1"
    factory.build(snapshot(Vendor.BUILDIUM, sandbox), lambda: None)
    with pytest.raises(DestinationRefused, match="not one of this vendor's API hosts"):
        factory.build(snapshot(Vendor.BUILDIUM, "http://127.0.0.1:9/t/x"), lambda: None)
    allowed = ConnectorFactory(cipher, http, frozenset({"127.0.0.1"}))
    allowed.build(snapshot(Vendor.BUILDIUM, "http://127.0.0.1:9/t/x"), lambda: None)
    with pytest.raises(PmsError, match="no base_url"):  # a vendor without fixed hosts needs one
        factory.build(snapshot(Vendor.APPFOLIO, None), lambda: None)


def test_jobs_of_one_integration_share_its_endpoint_and_each_paces_on_its_own_hook() -> None:
    """The factory keeps what an integration version's jobs share; each job's requests still
    run that job's pacing hook, a moved base_url is followed, and a refused one is refused on
    every job (a refusal is never kept as if it were an endpoint)."""
    seen: list[str] = []

    def pms(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(201, json={"Id": 1})

    http = httpx.Client(transport=httpx.MockTransport(pms))  # no network at all
    factory = ConnectorFactory(CredentialCipher([DEV_SECRET_KEY]), http)
    stored = snapshot(Vendor.BUILDIUM, None)
    paced: list[str] = []
    for job in ("job-a", "job-b"):
        connector, _ = factory.build(stored, lambda job=job: paced.append(job))  # type: ignore[misc]
        connector.execute(STEP, lambda _: None)
    moved = replace(stored, base_url="https://apisandbox.buildium.com")
    connector, _ = factory.build(moved, lambda: paced.append("job-c"))
    connector.execute(STEP, lambda _: None)

    assert paced == ["job-a", "job-b", "job-c"]
    assert seen == [
        "https://api.buildium.com/v1/leases/tenants",
        "https://api.buildium.com/v1/leases/tenants",
        "https://apisandbox.buildium.com/v1/leases/tenants",
    ]
    refused = replace(stored, base_url="http://127.0.0.1:9/t/x")
    for _ in range(2):
        with pytest.raises(DestinationRefused, match="not one of this vendor's API hosts"):
            factory.build(refused, lambda: None)


def test_tls_is_verified_against_the_url_hostname_not_the_address_connected_to(
    tmp_path: Path,
) -> None:
    """Connecting to the checked address keeps TLS honest: the certificate must match the
    URL's name (sent as SNI), so a name resolving to the same address with no certificate of
    its own fails."""
    cert, key = self_signed_certificate("pms.acme.test", tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    dns = StubDns({"pms.acme.test": ["127.0.0.1"], "other.acme.test": ["127.0.0.1"]})
    transport = OutboundTransport(DestinationPolicy(LOOPBACK_ONLY, dns), ssl_context=client_tls)
    with counting_server(tls=server_tls) as server, httpx.Client(transport=transport) as http:
        assert http.get(f"https://pms.acme.test:{server.port}/x").status_code == 200
        with pytest.raises(httpx.ConnectError, match=r"(?i)hostname|certificate"):
            http.get(f"https://other.acme.test:{server.port}/x")
        assert server.requests == [("GET", "/x")]


def test_credentials_are_decrypted_once_per_ciphertext() -> None:
    decrypted: list[bytes | None] = []

    class CountingCipher(CredentialCipher):
        def decrypt(self, token: bytes | None) -> dict[str, Any]:
            decrypted.append(token)
            return super().decrypt(token)

    sent: list[httpx.Headers] = []

    def pms(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers)
        return httpx.Response(201, json={"Id": 1})

    http = httpx.Client(transport=httpx.MockTransport(pms))  # no network at all
    factory = ConnectorFactory(CountingCipher([DEV_SECRET_KEY]), http)
    stored = snapshot(Vendor.BUILDIUM, None)
    for _ in range(3):
        connector, _ = factory.build(stored, lambda: None)
        connector.execute(STEP, lambda _: None)
    changed = snapshot(Vendor.BUILDIUM, None)  # credentials stored again: a new ciphertext
    factory.build(changed, lambda: None)

    assert decrypted == [stored.credentials_encrypted, changed.credentials_encrypted]
    # Every job authenticated alike, with the credentials decrypted by the first.
    assert sent[0]["x-buildium-client-secret"] == "s"
    assert all(headers == sent[0] for headers in sent)

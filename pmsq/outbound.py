"""Where pmsq's workers may send requests: the destination policy of every outbound request.

Accounts choose the URLs pmsq calls (an integration's `base_url`, a webhook's `url`) and read
the answers back (job logs, sync pages, delivery logs). Without a policy, an account could aim
the workers at the deployment's own network (a metrics endpoint, a cloud metadata service,
another tenant's database admin) and read what it answers. So an outbound request may only
connect to a public address, or to one inside `PMSQ_ALLOWED_OUTBOUND_NETWORKS`.

The check is made on the address actually connected to: `OutboundBackend` resolves the host
itself, checks every address, and connects to the checked address, so a DNS answer that changes
between a check and the connection (DNS rebinding) cannot get around it, and neither can a
redirect (each hop connects through the same backend). TLS still verifies the URL's hostname.
`DestinationPolicy.check_url` answers the same question early, when an integration or a
webhook is saved, so a destination known to be refused is a 400 rather than a failed job.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore
import httpx

from pmsq.errors import DestinationRefused
from pmsq.settings import Settings
from pmsq.tracing import TracedTransport

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Resolves (host, port) to the addresses a TCP connection could use; raises OSError
#: (`socket.gaierror`) when the name does not resolve. Tests pass a stub.
Resolver = Callable[[str, int], list[str]]

#: The well-known NAT64 prefix: its addresses stand for the IPv4 address in their last 32 bits.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
#: IPv6 unique-local addresses (the IPv6 counterpart of RFC 1918).
UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
#: Same connection limits as httpx's own default client.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def resolve_tcp(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for a TCP connection, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); ValueError on a bad one."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in _items(text))


def parse_hosts(text: str) -> frozenset[str]:
    """Comma-separated hostnames, lower-cased (hostnames are case-insensitive)."""
    return frozenset(part.strip().lower().rstrip(".") for part in _items(text))


def _items(text: str) -> list[str]:
    return [part for part in text.split(",") if part.strip()]


def _parse(url: str) -> httpx.URL:
    """`url` as httpx will send it; a URL httpx cannot send is refused (without echoing it:
    it may carry credentials)."""
    try:
        return httpx.URL(url)
    except httpx.InvalidURL:
        raise DestinationRefused("destination refused: not a valid URL") from None


def _literal_ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64, 6to4), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def address_class(address: IpAddress) -> str | None:
    """Why `address` is not public ("loopback", "private", ...), or None when it is."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address in UNIQUE_LOCAL:
        return "unique-local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses outbound requests may connect to: public ones, and the allowed networks.

    An address is refused if it, or the IPv4 address it embeds, is not public, unless either
    falls inside `allowed_networks`.
    """

    allowed_networks: tuple[IpNetwork, ...] = ()
    resolver: Resolver = resolve_tcp

    @classmethod
    def from_settings(
        cls, settings: Settings, resolver: Resolver = resolve_tcp
    ) -> DestinationPolicy:
        return cls(parse_networks(settings.allowed_outbound_networks), resolver)

    def refusal(self, address: str) -> str | None:
        """Why connecting to the literal `address` is refused, or None when it is allowed."""
        ip = ipaddress.ip_address(address)
        embedded = _embedded_ipv4(ip)
        candidates = [ip] if embedded is None else [embedded, ip]
        if any(c in network for c in candidates for network in self.allowed_networks):
            return None
        for candidate in candidates:
            reason = address_class(candidate)
            if reason is not None:
                return f"{candidate} is {reason}, not a public address"
        return None

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`, every one of them allowed.

        Raises DestinationRefused if any address the host resolves to is refused (a name that
        answers with both public and internal addresses is not one to trust), and OSError when
        the name does not resolve.
        """
        literal = _literal_ip(host)
        found = [str(literal)] if literal is not None else self.resolver(host, port)
        if not found:
            raise OSError(f"{host} resolved to no address")
        for address in found:
            reason = self.refusal(address)
            if reason is not None:
                where = "" if literal is not None else f"{host} resolves to {address}: "
                raise DestinationRefused(
                    f"destination refused: {where}{reason} (pmsq connects only to public "
                    "addresses and to PMSQ_ALLOWED_OUTBOUND_NETWORKS)"
                )
        return found

    def check_url(self, url: str) -> None:
        """Raises DestinationRefused if `url` is known now to lead to a refused address.

        A literal address is judged as is; a hostname by what it resolves to now. A name that
        does not resolve yet is let through: the check at connection time still applies.
        """
        parsed = _parse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            self.addresses(parsed.host, port)
        except OSError:
            return


def host_refusal(
    url: str, vendor_hosts: Collection[str], allowed_hosts: Collection[str]
) -> str | None:
    """Why `url` may not serve a vendor with fixed API hosts, or None when it may.

    A vendor with no fixed hosts (`vendor_hosts` empty) takes any host; otherwise the URL's
    host must be one of the vendor's or one the operator allowed (`PMSQ_ALLOWED_PMS_HOSTS`).
    """
    if not vendor_hosts:
        return None
    host = _parse(url).host.lower().rstrip(".")
    if host in vendor_hosts or host in allowed_hosts:
        return None
    return (
        f"host '{host}' is not one of this vendor's API hosts ({', '.join(vendor_hosts)}); "
        "leave base_url out to use them"
    )


class OutboundBackend(httpcore.SyncBackend):
    """httpcore's network backend with the destination policy at connect time.

    httpcore hands it the URL's host; it resolves it once, refuses the connection if any
    address is refused, and connects to the checked address itself (never resolving again).
    TLS is started by httpcore afterwards with the URL's hostname, so certificates are verified
    against the name, not the address.
    """

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.addresses(host, port)
        except DestinationRefused:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last_error: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None  # `addresses` is never empty
        raise last_error


class OutboundTransport(httpx.HTTPTransport):
    """httpx's transport, connecting through `OutboundBackend`."""

    def __init__(
        self,
        policy: DestinationPolicy,
        limits: httpx.Limits = DEFAULT_LIMITS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context` defaults to httpx's (certifi's CAs, hostname checked)."""
        super().__init__(limits=limits)
        # httpx (0.28) does not take a network backend; its pool is rebuilt here with the same
        # TLS context and limits and the guarded backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=OutboundBackend(policy),
        )


class NoCookies(httpx.Cookies):
    """A cookie store that never keeps one: answers' `Set-Cookie` headers are not even read.

    httpx hands every answer to its client's cookie store, which builds urllib request and
    response adapters and an email message of the headers before its policy may refuse
    them all: about a tenth of the CPU of a PMS request, spent to keep nothing."""

    def __init__(self) -> None:
        super().__init__(CookieJar(DefaultCookiePolicy(allowed_domains=[])))

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keeps nothing (see the class)."""

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        """Keeps nothing: no cookie goes out with any request of this client."""


class OutboundClient(httpx.Client):
    """httpx's client whose cookie store keeps nothing (`NoCookies`): the client is shared by
    every account's requests, so a session cookie one integration's PMS set would go out
    with another's requests to the same host."""

    def __init__(self, **kwargs: Any) -> None:
        self._no_cookies = NoCookies()
        super().__init__(**kwargs)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("the outbound client keeps no cookies")


def outbound_client(
    policy: DestinationPolicy, *, timeout_s: float, trace_as: str | None = None
) -> httpx.Client:
    """The HTTP client of every request pmsq sends to an account's destination.

    Redirects are not followed (a 3xx is the answer), and the environment is not trusted:
    a proxy would be the address connected to, and netrc would add credentials to requests.
    No cookie is kept: the client is shared by every account's requests, so a session cookie
    one integration's PMS set would go out with another's requests to the same host.
    With `trace_as` ("PMS"), each request made inside a trace gets a span of that name.
    """
    transport: httpx.BaseTransport = OutboundTransport(policy)
    if trace_as is not None:
        transport = TracedTransport(transport, trace_as)
    return OutboundClient(
        transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False
    )

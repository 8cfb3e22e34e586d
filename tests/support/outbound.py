"""Outbound-policy test aids: a stub resolver, and a loopback HTTP server that counts connections.

Tests never resolve a real name or contact a real non-loopback address: names resolve through
`StubDns`, and the only servers are `CountingServer`s on loopback addresses.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: What the tests' API and workers may reach: the servers tests start on loopback; BUILDIUM
#: integrations may point at them instead of Buildium's own hosts.
TEST_OUTBOUND_SETTINGS = {
    "allowed_outbound_networks": "127.0.0.0/8",
    "allowed_pms_hosts": "127.0.0.1",
}


@dataclass
class StubDns:
    """A resolver answering from a table; any other name does not resolve (no real DNS)."""

    names: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test's DNS table")
        return list(self.names[host])


@dataclass
class CountingServer:
    """An HTTP server on a loopback address that counts every TCP connection it accepts."""

    host: str
    port: int
    connections: list[tuple[str, int]]
    requests: list[tuple[str, str]]

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"


@contextmanager
def counting_server(
    host: str = "127.0.0.1",
    status: int = 200,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[CountingServer]:
    """Serves every request with `status` (and `headers`) and an empty JSON object; over TLS
    with `tls` (a server context), where a connection counts once its handshake succeeded."""
    connections: list[tuple[str, int]] = []
    requests: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            requests.append((self.command, self.path))
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def verify_request(self, request: object, client_address: object) -> bool:
            connections.append(client_address)  # type: ignore[arg-type]
            return True

    server = Server((host, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="counting-server", daemon=True)
    thread.start()
    try:
        yield CountingServer(host, int(server.server_address[1]), connections, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def self_signed_certificate(hostname: str, directory: Path) -> tuple[Path, Path]:
    """A certificate for `hostname` signed by its own key: (certificate PEM, key PEM) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{hostname}.crt", directory / f"{hostname}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path

"""Separate "hosts" on one machine: network namespaces on a bridge, for multi-host tests.

`Hosts(n)` creates a Linux bridge in the root namespace with the address `10.200.S.1/24` (S a
subnet no interface of the machine uses yet) and `n` network namespaces, each joined to the
bridge by a veth pair whose inside end is `eth0` with the address `10.200.S.(10 + i)/24`.
The namespaces have no default route, so a process in one reaches the bridge's subnet (the
other hosts, and the bridge's address, where the servers listen: `also_on=` in
`support.services`) and its own loopback, nothing else. `cut(i)` takes host i's link down
at the bridge, as a pulled cable or a dead switch port would: its packets are dropped, its
sockets stay open and hang (no error comes back); `restore(i)` brings it up again and the
connections carry on.

Names carry this process's id (`pmsq-h{pid}-{i}`, `pqb{pid}`, `pqv{pid}h{i}`; an interface
name has at most 15 bytes), so parallel test processes never collide, and entering removes
what a killed earlier run of a process that no longer exists left behind. Leaving kills what
still runs inside the namespaces and deletes them and the bridge, also when setup failed
half-way. Creating them needs root and `ip netns`; `why_impossible()` says why not, for a skip.

`HostsStack` is `support.stack.Stack` with its workers placed on hosts (`start_workers`) and
the sandbox PMS on the bridge's address; `running_hosts_stack` starts and stops one.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from .processes import ManagedProcess, stop_all
from .stack import BEAT_COMMAND, BROKER_REDIS_DB, Stack, worker_command

#: Namespace names are `NETNS_PREFIX{pid}-{i}`.
NETNS_PREFIX = "pmsq-h"
#: The bridge is `BRIDGE_PREFIX{pid}`, host i's root-side veth end `VETH_PREFIX{pid}h{i}`.
BRIDGE_PREFIX = "pqb"
VETH_PREFIX = "pqv"
#: Name of a host's own end of its veth pair, inside its namespace.
HOST_INTERFACE = "eth0"
#: Subnets are `10.200.S.0/24`; the first one free from `pid % 250` on is taken.
SUBNET_BASE = ipaddress.ip_network("10.200.0.0/16")
#: Last octet of host i's address is `HOST_OCTET_BASE + i` (the bridge is .1).
HOST_OCTET_BASE = 10
#: Seconds one `ip` command may take.
IP_TIMEOUT_S = 10.0


class NetnsError(RuntimeError):
    """Raised when an `ip` command that sets up or changes the namespaces fails."""


def why_impossible() -> str | None:
    """Why namespaces cannot be created here (not root, no `ip`, `ip netns` refused), or
    None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"{NETNS_PREFIX}{os.getpid()}-probe"
    added = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if added.returncode != 0:
        return f"ip netns add is refused here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    bridge = f"{BRIDGE_PREFIX}{os.getpid()}p"
    made = subprocess.run(
        ["ip", "link", "add", bridge, "type", "bridge"], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"a bridge cannot be created here: {made.stderr.strip()}"
    subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_stale() -> None:
    """Delete namespaces and bridges of ours whose creating process is gone (a run killed
    before its cleanup)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        match = re.match(rf"{re.escape(NETNS_PREFIX)}(\d+)-\S+", line)
        if match and not _pid_alive(int(match.group(1))):
            _kill_inside(match.group(0))
            _ip("netns", "delete", match.group(0), check=False)
    for line in _ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        match = re.search(rf"\d+: ({re.escape(BRIDGE_PREFIX)}(\d+)):", line)
        if match and not _pid_alive(int(match.group(2))):
            _ip("link", "delete", match.group(1), check=False)


def _kill_inside(netns: str) -> None:
    """SIGKILL whatever still runs in `netns` (processes this module's user started there)."""
    listed = _ip("netns", "pids", netns, check=False).stdout.split()
    for pid in listed:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            continue


def _free_subnet() -> ipaddress.IPv4Network:
    used = [
        ipaddress.ip_interface(address).network
        for address in re.findall(r"inet (\S+)", _ip("-o", "-4", "addr", "show").stdout)
    ]
    subnets = list(SUBNET_BASE.subnets(new_prefix=24))[1:251]
    start = os.getpid() % len(subnets)
    for subnet in subnets[start:] + subnets[:start]:
        if not any(subnet.overlaps(network) for network in used):
            return subnet
    raise NetnsError(f"no /24 of {SUBNET_BASE} is free")


class Hosts:
    """`count` network namespaces on one bridge; see the module docstring."""

    def __init__(self, count: int) -> None:
        pid = os.getpid()
        self.count = count
        self.bridge = f"{BRIDGE_PREFIX}{pid}"
        self.names = [f"{NETNS_PREFIX}{pid}-{i}" for i in range(count)]
        self.veths = [f"{VETH_PREFIX}{pid}h{i}" for i in range(count)]
        self.subnet: ipaddress.IPv4Network | None = None
        self._created: list[str] = []

    @property
    def network(self) -> str:
        """`10.200.S.0/24`: every host and the bridge."""
        return str(self._subnet())

    @property
    def server_address(self) -> str:
        """The bridge's address in the root namespace, where the shared servers listen."""
        return str(self._subnet()[1])

    @property
    def server_interface(self) -> str:
        """`10.200.S.1/24`, for `also_on=` of the servers."""
        return f"{self.server_address}/{self._subnet().prefixlen}"

    def bridged(self, url: str) -> str:
        """A test server's URL (`...@127.0.0.1:PORT/...`) as the hosts reach it: at the
        bridge's address (the server must listen there too, `also_on=server_interface`)."""
        return url.replace("127.0.0.1", self.server_address, 1)

    def address(self, host: int) -> str:
        """Host `host`'s own address."""
        return str(self._subnet()[HOST_OCTET_BASE + host])

    def _subnet(self) -> ipaddress.IPv4Network:
        if self.subnet is None:
            raise NetnsError("the hosts are not created yet")
        return self.subnet

    def start(self) -> Self:
        """Create the bridge and the namespaces; raises `NetnsError` (after undoing what was
        made) when an `ip` command fails."""
        try:
            remove_stale()
            self.subnet = _free_subnet()
            _ip("link", "add", self.bridge, "type", "bridge")
            self._created.append(self.bridge)
            _ip("addr", "add", self.server_interface, "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, (name, veth) in enumerate(zip(self.names, self.veths, strict=True)):
                _ip("netns", "add", name)
                self._created.append(name)
                _ip("link", "add", veth, "type", "veth", "peer", "name", HOST_INTERFACE,
                    "netns", name)  # fmt: skip
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                inside = ("netns", "exec", name, "ip")
                own = f"{self.address(i)}/{self._subnet().prefixlen}"
                _ip(*inside, "addr", "add", own, "dev", HOST_INTERFACE)
                _ip(*inside, "link", "set", HOST_INTERFACE, "up")
                _ip(*inside, "link", "set", "lo", "up")
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill what runs inside, delete the namespaces (their veth pairs go with them) and the
        bridge. Idempotent; never raises for something already gone."""
        for item in reversed(self._created):
            if item == self.bridge:
                _ip("link", "delete", item, check=False)
            else:
                _kill_inside(item)
                _ip("netns", "delete", item, check=False)
        self._created.clear()

    def cut(self, host: int) -> None:
        """Take host `host`'s link down at the bridge: nothing goes in or out."""
        _ip("link", "set", self.veths[host], "down")

    def restore(self, host: int) -> None:
        """Bring host `host`'s link up again."""
        _ip("link", "set", self.veths[host], "up")

    def command(self, host: int, args: Sequence[str | os.PathLike[str]]) -> list[str]:
        """`args` run inside host `host`'s namespace (`ip netns exec` execs it: the process's
        id is the command's own)."""
        return ["ip", "netns", "exec", self.names[host], *(os.fspath(a) for a in args)]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class HostsStack(Stack):
    """The write path with its workers on separate hosts: the sandbox PMS runs in the root
    namespace (on the bridge's address, so every host reaches it), the API in the root
    namespace or, with `api_host`, inside that host's namespace (listening on its address),
    each worker and beat inside one host's namespace or, placed on host None, in the root one;
    `database_url` and `redis_url` must name servers the hosts reach (on
    `hosts.server_address`). Every process gets the same `PMSQ_*` settings, as machines of one
    deployment would. With `hosts` None everything is on loopback (a benchmark's one-host
    layouts where namespaces cannot be made)."""

    def __init__(
        self,
        hosts: Hosts | None,
        database_url: str,
        redis_url: str,
        env: Mapping[str, str] | None = None,
        api_host: int | None = None,
    ) -> None:
        reach = {"PMSQ_ALLOWED_OUTBOUND_NETWORKS": hosts.network} if hosts is not None else {}
        super().__init__(database_url, redis_url, {**reach, **(env or {})})
        self.hosts = hosts
        self.api_host = api_host
        if api_host is not None:
            if hosts is None:
                raise NetnsError(f"no host {api_host}: this stack has no namespaces")
            args = [
                sys.executable, "-m", "pmsq.cli", "api",
                "--host", hosts.address(api_host), "--port", str(self.api_port),
            ]  # fmt: skip
            self.api = ManagedProcess(
                hosts.command(api_host, args),
                name=f"host{api_host}-api", env=self.env, cwd=self.log_dir, log_dir=self.log_dir,
            )  # fmt: skip
        #: Each started worker's host.
        self.worker_host: dict[ManagedProcess, int | None] = {}
        self.sandbox = ManagedProcess(
            [sys.executable, "-m", "pmsq.cli", "sandbox",
             "--host", self.sandbox_host, "--port", str(self.sandbox_port)],
            name="sandbox", env=self.env, cwd=self.log_dir, log_dir=self.log_dir,
        )  # fmt: skip

    @property
    def api_url(self) -> str:
        if self.api_host is None or self.hosts is None:
            return super().api_url
        return f"http://{self.hosts.address(self.api_host)}:{self.api_port}"

    @property
    def sandbox_host(self) -> str:
        return self.hosts.server_address if self.hosts is not None else "127.0.0.1"

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.sandbox_host}:{self.sandbox_port}"

    def start(self) -> HostsStack:
        """Start the sandbox and the API (no worker: `start_workers`) and wait for both."""
        self.sandbox.start()
        self.api.start()
        self.sandbox.wait_http(f"{self.sandbox_url}/_sandbox/health", deadline_s=30)
        self.api.wait_http(f"{self.api_url}/healthz", deadline_s=30)
        return self

    def start_workers(
        self, on_hosts: Sequence[int | None], concurrency: int = 2
    ) -> list[ManagedProcess]:
        """One worker on each host of `on_hosts` (a host may appear more than once; None is
        the root namespace, where the servers are), started side by side; returns once every
        one consumes from the queue."""
        started = [self._spawn_worker_on(host, concurrency) for host in on_hosts]
        for worker in started:
            self._wait_ready(worker)
        return started

    def _spawn_worker_on(self, host: int | None, concurrency: int) -> ManagedProcess:
        n = next(_worker_numbers)
        args = worker_command(concurrency, f"host{host}-w{n}@%h")
        if host is not None and self.hosts is None:
            raise NetnsError(f"no host {host}: this stack has no namespaces")
        worker = ManagedProcess(
            args if host is None or self.hosts is None else self.hosts.command(host, args),
            name=f"host{host}-worker{n}", env=self.env, cwd=self.log_dir, log_dir=self.log_dir,
        ).start()  # fmt: skip
        self.workers.append(worker)
        self.worker_host[worker] = host
        return worker

    def start_beat_on(self, host: int) -> ManagedProcess:
        """Beat inside `host`'s namespace, with the same settings as every other process."""
        if self.hosts is None:
            raise NetnsError(f"no host {host}: this stack has no namespaces")
        beat = ManagedProcess(
            self.hosts.command(host, BEAT_COMMAND),
            name=f"host{host}-beat", env=self.env, cwd=self.log_dir, log_dir=self.log_dir,
        ).start()  # fmt: skip
        self.beats.append(beat)
        return beat

    def stop_workers(self) -> None:
        """Stop every worker (all at once) and forget them."""
        stop_all(self.workers, timeout_s=10)
        self.workers.clear()
        self.worker_host.clear()

    def workers_on(self, host: int | None) -> list[ManagedProcess]:
        return [w for w in self.workers if self.worker_host.get(w) == host]


_worker_numbers = itertools.count(1)


@contextmanager
def running_hosts_stack(
    hosts: Hosts,
    database_url: str,
    redis_server_url: str,
    env: Mapping[str, str] | None = None,
    api_host: int | None = None,
) -> Iterator[HostsStack]:
    """A started `HostsStack` whose broker is database `BROKER_REDIS_DB` of the redis-server
    at `redis_server_url` (emptied first); every process is stopped on leaving."""
    url = redis_server_url.rsplit("/", 1)[0] + f"/{BROKER_REDIS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    stack = HostsStack(hosts, database_url, url, env, api_host)
    try:
        yield stack.start()
    finally:
        stack.stop()

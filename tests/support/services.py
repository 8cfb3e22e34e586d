"""Real Redis and PostgreSQL servers for tests, each in a temp dir on a free 127.0.0.1 port.

Both classes are context managers: entering starts the server and waits (by polling, with a
deadline) until it answers; leaving stops it, kills anything left in its process group and removes
its directory. A server that fails to start raises `ServiceError` with the tail of its log.

PostgreSQL refuses to run as root. When the tests run as root, `initdb` and `postgres` are started
with their privileges dropped (`subprocess.Popen(user=..., group=...)`) to the `postgres` system
user, or to the user named by `PMSQ_TEST_PG_OS_USER`, or, if neither exists, to a system user
`pmsq-test` created with `useradd`. The temp dir is chowned to that user.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import redis
from psycopg import sql

from .processes import ManagedProcess, ProcessExitedError, wait_until

#: Seconds a server may take to answer after being started.
START_DEADLINE_S = 30.0
#: Seconds a server may take to shut down gracefully before its process group is SIGKILLed.
STOP_TIMEOUT_S = 10.0
#: Attempts to start a server when another process grabbed the free port first.
PORT_ATTEMPTS = 3
#: OS user created to run PostgreSQL when running as root and no `postgres` user exists.
FALLBACK_PG_OS_USER = "pmsq-test"
#: Superuser name inside the test cluster (independent of the OS user running it).
PG_SUPERUSER = "postgres"


class ServiceError(RuntimeError):
    """Raised when a test server cannot be found, started or used."""


class BinaryNotFoundError(ServiceError):
    """Raised when the server's executables are not installed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> Path:
    """`redis-server` on PATH; raises `BinaryNotFoundError`."""
    found = shutil.which("redis-server")
    if found is None:
        raise BinaryNotFoundError("redis-server is not on PATH (apt-get install redis-server)")
    return Path(found)


def find_postgres_bindir() -> Path:
    """The directory holding `initdb` and `postgres`: `$PMSQ_TEST_PG_BINDIR`, else the newest
    `/usr/lib/postgresql/*/bin`, else the directory of `postgres` on PATH.

    Raises `BinaryNotFoundError`.
    """
    override = os.environ.get("PMSQ_TEST_PG_BINDIR")
    candidates = [Path(override)] if override else []

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([\d.]+)/bin$", path)
        return tuple(int(p) for p in match.group(1).split(".") if p) if match else ()

    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    candidates += [Path(p) for p in installed]
    on_path = shutil.which("postgres")
    if on_path is not None:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    raise BinaryNotFoundError(
        "PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin "
        "or on PATH (apt-get install postgresql, or set PMSQ_TEST_PG_BINDIR)"
    )


class _Server:
    """Shared lifecycle: temp dir, process, start with port retries, stop and cleanup."""

    name = "server"
    #: Signal asking the server to shut down gracefully.
    _stop_signal: int = signal.SIGTERM

    def __init__(self) -> None:
        self.tmpdir: Path | None = None
        self.port: int | None = None
        self.process: ManagedProcess | None = None

    def _spawn(self, port: int) -> ManagedProcess:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """One-time setup in `self.tmpdir` before the first start attempt."""

    def start(self) -> Self:
        """Start the server and return once it answers; raises `ServiceError`."""
        if self.process is not None:
            raise ServiceError(f"{self.name} already started")
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"pmsq-{self.name}-"))
        try:
            self._prepare()
            for attempt in range(1, PORT_ATTEMPTS + 1):
                self.port = free_port()
                self.process = self._spawn(self.port)
                try:
                    self.process.wait_until(
                        self._ready, START_DEADLINE_S, message=f"{self.name} accepts connections"
                    )
                    return self
                except ProcessExitedError as exc:
                    log = self.process.log_text()
                    self.process.kill()
                    self.process = None
                    if "already in use" in log and attempt < PORT_ATTEMPTS:
                        continue  # someone took the port between free_port() and bind()
                    raise ServiceError(f"{self.name} failed to start: {exc}") from None
                except TimeoutError as exc:
                    raise ServiceError(f"{self.name} failed to start: {exc}") from None
            raise AssertionError("unreachable")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (gracefully, then SIGKILL) and delete its directory. Idempotent."""
        if self.process is not None:
            self.process.stop(self._stop_signal, STOP_TIMEOUT_S)
            self.process = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def restart(self, sig: int | None = None) -> None:
        """Stop the server with `sig` (its graceful signal by default; SIGKILL for a crash)
        and start it again on the same port and data directory, as a fault for its clients.
        A Redis restarted so comes back empty (no persistence)."""
        if self.process is None or self.port is None:
            raise ServiceError(f"{self.name} is not started")
        self.process.stop(self._stop_signal if sig is None else sig, STOP_TIMEOUT_S)
        self.process = self._spawn(self.port)
        self.process.wait_until(
            self._ready, START_DEADLINE_S, message=f"{self.name} accepts connections again"
        )

    def log_text(self) -> str:
        return self.process.log_text() if self.process is not None else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _answers_ping(port: int) -> bool:
    """Whether a Redis server or sentinel on 127.0.0.1:`port` answers PING yet."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


class RedisServer(_Server):
    """A throwaway `redis-server`: no persistence, bound to 127.0.0.1 on a free port."""

    name = "redis"

    def __init__(
        self,
        binary: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        *,
        also_on: Sequence[str] = (),
    ) -> None:
        """`also_on`: interface addresses (`10.200.7.1/24`, the prefix is ignored) it listens
        on besides 127.0.0.1, for clients in network namespaces (`support.netns`)."""
        super().__init__()
        self.binary = Path(binary) if binary is not None else find_redis_server()
        self.extra_args = list(extra_args)
        self.also_on = [address.split("/")[0] for address in also_on]

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        if self.port is None:
            raise ServiceError("redis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self, port: int) -> ManagedProcess:
        assert self.tmpdir is not None
        args: list[str | os.PathLike[str]] = [
            self.binary,
            "--port", str(port),
            "--bind", "127.0.0.1", *self.also_on,
            # Only the test's own namespaces reach `also_on`; without a password, protected
            # mode would refuse them.
            "--protected-mode", "no" if self.also_on else "yes",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.tmpdir),
            "--daemonize", "no",
            "--databases", "16",
            *self.extra_args,
        ]  # fmt: skip
        return ManagedProcess(args, name="redis-server", log_dir=self.tmpdir).start()

    def _ready(self) -> bool:
        assert self.port is not None
        return _answers_ping(self.port)


class RedisReplica(RedisServer):
    """A throwaway `redis-server` replicating the one on `primary_port` (127.0.0.1); it
    counts as started once its link to the primary is up."""

    name = "redis-replica"

    def __init__(self, primary_port: int, binary: str | os.PathLike[str] | None = None) -> None:
        super().__init__(binary, extra_args=["--replicaof", "127.0.0.1", str(primary_port)])

    def _ready(self) -> bool:
        assert self.port is not None
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            return client.info("replication").get("master_link_status") == "up"
        except redis.ConnectionError:
            return False
        finally:
            client.close()


class RedisSentinel(_Server):
    """One `redis-server --sentinel` on 127.0.0.1 watching the master `master_name`.

    Its config file lives in its temp dir (a sentinel rewrites it as it learns). It declares the
    master down after `down_after_ms` without an answer; `quorum` sentinels must agree."""

    name = "redis-sentinel"

    def __init__(
        self,
        master_name: str,
        master_port: int,
        *,
        quorum: int = 2,
        down_after_ms: int = 1000,
        binary: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.binary = Path(binary) if binary is not None else find_redis_server()
        self.master_name = master_name
        self.master_port = master_port
        self.quorum = quorum
        self.down_after_ms = down_after_ms

    def _spawn(self, port: int) -> ManagedProcess:
        assert self.tmpdir is not None
        config = self.tmpdir / "sentinel.conf"
        config.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.tmpdir}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} 10000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n"
        )
        args: list[str | os.PathLike[str]] = [self.binary, config, "--sentinel"]
        return ManagedProcess(args, name="redis-sentinel", log_dir=self.tmpdir).start()

    def _ready(self) -> bool:
        assert self.port is not None
        return _answers_ping(self.port)

    def master_state(self) -> dict[str, str]:
        """`SENTINEL MASTER <name>` as this sentinel sees it (flags, num-slaves, ...)."""
        assert self.port is not None
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=1.0, decode_responses=True
        )
        try:
            return {
                k: str(v)
                for k, v in client.execute_command("SENTINEL", "MASTER", self.master_name).items()
            }
        finally:
            client.close()


class RedisSentinelGroup:
    """A master, one replica and three sentinels on 127.0.0.1: a Redis that fails over.

    Entering starts them all and waits (polling, with a deadline) until every sentinel sees
    the replica and the two other sentinels, so a failover can happen; leaving stops them all.
    `url(db)` is the kombu-style `sentinel://...;sentinel://...` URL pmsq takes with
    `master_name`."""

    master_name = "pmsq-test"

    def __init__(self, sentinels: int = 3, down_after_ms: int = 1000) -> None:
        self.primary = RedisServer()
        self.replica: RedisReplica | None = None
        self.sentinels: list[RedisSentinel] = []
        self._sentinel_count = sentinels
        self._down_after_ms = down_after_ms

    def start(self) -> Self:
        try:
            self.primary.start()
            assert self.primary.port is not None
            self.replica = RedisReplica(self.primary.port).start()
            for _ in range(self._sentinel_count):
                sentinel = RedisSentinel(
                    self.master_name,
                    self.primary.port,
                    quorum=self._sentinel_count // 2 + 1,
                    down_after_ms=self._down_after_ms,
                )
                self.sentinels.append(sentinel.start())
            wait_until(
                self._watching, START_DEADLINE_S, 0.2, message="the sentinels see each other"
            )
            return self
        except BaseException:
            self.stop()
            raise

    def _watching(self) -> bool:
        others = str(self._sentinel_count - 1)
        return all(
            s.master_state().get("num-other-sentinels") == others
            and s.master_state().get("num-slaves") == "1"
            for s in self.sentinels
        )

    def url(self, db: int = 0) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}/{db}" for s in self.sentinels)

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers sees it."""
        for sentinel in self.sentinels:
            try:
                state = sentinel.master_state()
            except redis.ConnectionError:
                continue
            return int(state["port"])
        return None

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            if server is not None:
                server.stop()
        self.sentinels.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisClusterNode(RedisServer):
    """A throwaway `redis-server` in cluster mode; its cluster bus on a free port of its own
    (the default, port + 10000, may not exist for a high free port)."""

    name = "redis-cluster-node"

    def _spawn(self, port: int) -> ManagedProcess:
        self.extra_args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000",
            "--cluster-port", str(free_port()),
        ]  # fmt: skip
        return super()._spawn(port)


class RedisClusterGroup:
    """A Redis Cluster on 127.0.0.1: `primaries` masters sharing the 16384 slots, each with
    `replicas` replicas, made by `redis-cli --cluster create`.

    Entering starts every node and waits (polling, with a deadline) until every node reports
    `cluster_state:ok`; leaving stops them all. `url` is the `redis+cluster://` URL pmsq takes,
    naming every primary as a startup node."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        self.nodes = [RedisClusterNode() for _ in range(primaries * (1 + replicas))]
        self._replicas = replicas
        self._primaries = primaries

    def start(self) -> Self:
        try:
            for node in self.nodes:
                node.start()
            cli = shutil.which("redis-cli")
            if cli is None:
                raise BinaryNotFoundError("redis-cli is not on PATH (apt-get install redis-tools)")
            created = subprocess.run(
                [cli, "--cluster", "create",
                 *(f"127.0.0.1:{node.port}" for node in self.nodes),
                 "--cluster-replicas", str(self._replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=START_DEADLINE_S, check=False,
            )  # fmt: skip
            if created.returncode != 0:
                raise ServiceError(f"redis-cli --cluster create failed:\n{created.stdout}")
            wait_until(self._ok, START_DEADLINE_S, 0.2, message="every cluster node is ok")
            return self
        except BaseException:
            self.stop()
            raise

    def _ok(self) -> bool:
        for node in self.nodes:
            client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=1.0)
            try:
                info = client.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
                known = f"cluster_known_nodes:{len(self.nodes)}"
                if known not in info:
                    return False
            finally:
                client.close()
        return True

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _pg_os_user() -> pwd.struct_passwd | None:
    """The unprivileged OS user to run PostgreSQL as, or `None` when not running as root."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("PMSQ_TEST_PG_OS_USER")
    for name in [wanted] if wanted else ["postgres", FALLBACK_PG_OS_USER]:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    if wanted:
        raise ServiceError(f"PMSQ_TEST_PG_OS_USER={wanted!r} does not exist")
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServiceError("running as root, no 'postgres' user, and no useradd to create one")
    created = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         FALLBACK_PG_OS_USER],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    try:
        # Another pytest-xdist worker may have created it in the meantime: useradd then fails.
        return pwd.getpwnam(FALLBACK_PG_OS_USER)
    except KeyError:
        raise ServiceError(
            f"useradd {FALLBACK_PG_OS_USER} failed with status {created.returncode}: "
            f"{created.stderr.strip()}"
        ) from None


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster: trust auth, fsync off, TCP on 127.0.0.1 plus a unix
    socket in its temp dir. Runs as an unprivileged OS user when the tests run as root."""

    name = "postgres"
    _stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions and exit

    def __init__(
        self, bindir: str | os.PathLike[str] | None = None, *, also_on: Sequence[str] = ()
    ) -> None:
        """`also_on`: interface addresses with their prefix (`10.200.7.1/24`) it listens on
        besides 127.0.0.1, trusting clients from each one's network (`support.netns`)."""
        super().__init__()
        self.bindir = Path(bindir) if bindir is not None else find_postgres_bindir()
        self.os_user = _pg_os_user()
        self.also_on = [ipaddress.ip_interface(address) for address in also_on]

    @property
    def user(self) -> str:
        """The database superuser."""
        return PG_SUPERUSER

    @property
    def url(self) -> str:
        """`postgresql://postgres@127.0.0.1:PORT/postgres` (no password: trust auth)."""
        return self.database_url("postgres")

    @property
    def socket_dir(self) -> Path:
        if self.tmpdir is None:
            raise ServiceError("postgres is not started")
        return self.tmpdir / "socket"

    def database_url(self, name: str) -> str:
        if self.port is None:
            raise ServiceError("postgres is not started")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """Create database `name` (must not exist) and return its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting anyone still using it."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def _os_uid(self) -> int | None:
        return self.os_user.pw_uid if self.os_user is not None else None

    def _os_gid(self) -> int | None:
        return self.os_user.pw_gid if self.os_user is not None else None

    def _prepare(self) -> None:
        assert self.tmpdir is not None
        self.socket_dir.mkdir()
        if self.os_user is not None:
            for path in (self.tmpdir, self.socket_dir):
                os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)
        initdb_args: list[str | os.PathLike[str]] = [
            self.bindir / "initdb",
            "--pgdata", self.tmpdir / "data",
            "--username", PG_SUPERUSER,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
        ]  # fmt: skip
        initdb = subprocess.run(
            initdb_args,
            cwd=self.tmpdir,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            capture_output=True,
            text=True,
            check=False,
            user=self._os_uid(),
            group=self._os_gid(),
        )
        if initdb.returncode != 0:
            output = "\n".join((initdb.stdout + initdb.stderr).splitlines()[-40:])
            raise ServiceError(f"initdb failed with status {initdb.returncode}:\n{output}")
        if self.also_on:
            with (self.tmpdir / "data" / "pg_hba.conf").open("a") as hba:
                for interface in self.also_on:
                    hba.write(f"host all all {interface.network} trust\n")

    def _spawn(self, port: int) -> ManagedProcess:
        assert self.tmpdir is not None
        args: list[str | os.PathLike[str]] = [
            self.bindir / "postgres",
            "-D", self.tmpdir / "data",
            "-p", str(port),
            "-k", self.socket_dir,
            "-c", "listen_addresses=" + ",".join(
                ["127.0.0.1", *(str(interface.ip) for interface in self.also_on)]
            ),
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
            "-c", "max_parallel_workers_per_gather=0",
        ]  # fmt: skip
        return ManagedProcess(
            args,
            name="postgres",
            log_dir=self.tmpdir,
            cwd=self.tmpdir,
            env={"LC_ALL": "C", "LANG": "C"},
            user=self._os_uid(),
            group=self._os_gid(),
        ).start()

    def _ready(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

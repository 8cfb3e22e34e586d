"""Writes per second the API accepts, against a minimal FastAPI endpoint on the same database.

`python -m bench.api_accept [--writes N] [--threads T] [--rounds R] [--database sqlite|postgresql]`
(the option may be repeated; both by default) prints, per database, the writes per second each
server accepted and the CPU it spent per write, round by round, and the ratio API / peer.
Nothing is asserted: speed depends on the machine.

- **The API:** `pmsq api` (uvicorn, as `bench.pipeline` starts it) on a fresh migrated database
  and a throwaway redis-server, with no worker: each write is validated, stored, put in its
  integration's backlog, admitted and published to the broker, as in production. Writes go
  round-robin to enough integrations that none reaches its concurrency cap (admission leases
  of unconsumed jobs lapse only after `PMSQ_JOB_LEASE_S`), so every write takes the whole path.
  The API answers a write before it admits it (on threads of its own), so an API round's clock
  stops only once every write of it has left PENDING in the job store: what is timed is writes
  accepted *and* admitted.
- **The peer:** this module's `peer` command, a FastAPI app served the same way (one uvicorn
  process, `log_level="warning"`): `POST /v1/residents/` parses the body into a pydantic model
  and inserts one row through a SQLAlchemy session into a table of the same database, with
  pmsq's engine settings (`pmsq.models.db`: WAL, `BEGIN IMMEDIATE` on SQLite), and answers the
  row's id.

Both run at once (idle while the other is driven) and are driven alike: one httpx client with
`--threads` keep-alive connections, the same bodies, `--warmup` writes each before any clock
starts, then `--rounds` rounds, each timing `--writes` writes to one server and then the other
(the order alternates between rounds). The ratio is the median round's. The server's CPU
(user + system from `/proc`) per accepted write is shown too: it moves less with the machine's
other load than the wall clock does.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, DateTime, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.costs import CpuMeter
from bench.pipeline import (
    REPO_ROOT,
    START_DEADLINE_S,
    Databases,
    ManagedProcess,
    RedisServer,
    free_port,
    load_average,
    observer_engine,
    redis_url_of,
    running,
    table,
    wait_for,
)
from pmsq.api.auth import create_token
from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.enums import JobStatus
from pmsq.models.job import Job

#: Redis database of the API's broker and flow-control state.
PMSQ_REDIS_DB = 1
#: Most jobs one integration may have admitted at once (the API refuses a higher cap); the
#: benchmark spreads its writes so no integration reaches it.
INTEGRATION_CAP = 100
#: Seconds the API gets, after the last write was accepted, to have admitted every write.
ADMIT_DEADLINE_S = 120.0
#: The path both servers accept writes on.
WRITE_PATH = "/v1/residents/"


# -- the peer ---------------------------------------------------------------------------------


class PeerBase(DeclarativeBase):
    pass


class PeerWrite(PeerBase):
    """One accepted write of the peer: a row with the request's body."""

    __tablename__ = "bench_peer_writes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    integration_id: Mapped[str] = mapped_column(String(36))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PeerIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    integration_id: str


class PeerOut(BaseModel):
    job_id: str


def peer_app(database_url: str) -> FastAPI:
    """The minimal endpoint: parse, insert one row in its own transaction, answer its id."""
    engine = make_engine(database_url)
    PeerBase.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    app = FastAPI(title="bench peer")

    @app.post(WRITE_PATH, response_model=PeerOut)
    def create(body: PeerIn) -> PeerOut:
        row = PeerWrite(
            id=str(uuid.uuid4()),
            integration_id=body.integration_id,
            payload=body.model_dump(),
            created_at=datetime.now(UTC),
        )
        with sessions.begin() as session:
            session.add(row)
        return PeerOut(job_id=row.id)

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def serve_peer(database_url: str, port: int) -> None:
    """Serve the peer as `pmsq.api.server.serve` serves the API."""
    uvicorn.run(peer_app(database_url), host="127.0.0.1", port=port, log_level="warning")


# -- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """One timed round of one server: `writes` accepted in `seconds`, using `cpu_s`."""

    server: str
    writes: int
    seconds: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.writes / self.seconds

    @property
    def cpu_ms_per_write(self) -> float:
        return self.cpu_s * 1000 / self.writes


class Server:
    """A server under test: its process, where it accepts writes, and how to write to it."""

    def __init__(
        self,
        name: str,
        process: ManagedProcess,
        url: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.process = process
        self.url = url
        self.headers = headers or {}
        self.integration_ids: list[str] = ["peer"]
        #: Waits until the server has finished with its first N writes (the clock runs on).
        self.settle: Callable[[int], None] = lambda _writes: None

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process (and any it started) so far."""
        meter = CpuMeter()
        meter.watch(self.name, self.process.popen.pid)
        return meter.sample()[self.name]

    def body(self, i: int) -> dict[str, Any]:
        integration_id = self.integration_ids[i % len(self.integration_ids)]
        return {"integration_id": integration_id, "first_name": f"R{i}", "last_name": "Bench"}


def drive(http: httpx.Client, server: Server, first: int, count: int, threads: int) -> Accepted:
    """Write `count` records to `server` from `threads` threads and let it settle; any
    refusal stops the run."""

    def write(i: int) -> None:
        response = http.post(server.url + WRITE_PATH, json=server.body(i), headers=server.headers)
        if response.status_code != 200:
            raise RuntimeError(
                f"{server.name}: write {i} refused: {response.status_code} {response.text}"
            )

    cpu_before = server.cpu_s()
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(first, first + count)))
    server.settle(first + count)
    seconds = time.monotonic() - started
    return Accepted(server.name, count, seconds, server.cpu_s() - cpu_before)


def create_integrations(http: httpx.Client, api: Server, count: int) -> list[str]:
    """`count` active SANDBOX integrations whose limits never throttle the benchmark."""
    ids = []
    for n in range(count):
        body = {
            "name": f"bench-{n}",
            "integration_vendor": "SANDBOX",
            "active": True,
            "base_url": "http://127.0.0.1:9/bench",
            "credentials": {"api_key": "bench-key-0123456789"},
            "max_job_concurrency": INTEGRATION_CAP,
            "max_request_frequency": 100_000,
            "max_request_cadence": "SECOND",
        }
        response = http.post(f"{api.url}/v1/admin/integrations/", json=body, headers=api.headers)
        if response.status_code != 200:
            raise RuntimeError(f"integration refused: {response.status_code} {response.text}")
        ids.append(str(response.json()["result"]["id"]))
    return ids


def measure(
    kind: str,
    databases: Databases,
    redis_server: RedisServer,
    log_dir: Path,
    args: argparse.Namespace,
) -> list[tuple[Accepted, Accepted]]:
    """Rounds of (API, peer) on one fresh database of `kind`."""
    database_url = databases.new(f"accept_{kind}")
    env = {
        "PMSQ_DATABASE_URL": database_url,
        "PMSQ_REDIS_URL": redis_url_of(redis_server, PMSQ_REDIS_DB),
        "PMSQ_AUTO_MIGRATE": "false",
        # The integrations' (never contacted) base URL is on loopback.
        "PMSQ_ALLOWED_OUTBOUND_NETWORKS": "127.0.0.0/8",
    }
    api_port, peer_port = free_port(), free_port()
    api = Server(
        "pmsq API",
        ManagedProcess(
            [sys.executable, "-m", "pmsq.cli", "api", "--port", str(api_port)],
            name=f"api-{kind}", env=env, cwd=REPO_ROOT, log_dir=log_dir,
        ),
        f"http://127.0.0.1:{api_port}",
    )  # fmt: skip
    peer = Server(
        "FastAPI + SQLAlchemy peer",
        ManagedProcess(
            [
                sys.executable, "-m", "bench.api_accept", "peer",
                "--port", str(peer_port), "--database-url", database_url,
            ],
            name=f"peer-{kind}", env=env, cwd=REPO_ROOT, log_dir=log_dir,
        ),
        f"http://127.0.0.1:{peer_port}",
    )  # fmt: skip
    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        api.headers = {"Authorization": f"Bearer {create_token(session, 'bench')}"}
    engine.dispose()
    limits = httpx.Limits(max_connections=args.threads, max_keepalive_connections=args.threads)
    total = args.warmup + args.rounds * args.writes
    admitted = Admitted(database_url)
    api.settle = admitted.wait
    with (
        running(api.process),
        running(peer.process),
        httpx.Client(timeout=60, limits=limits) as http,
        closing(admitted),
    ):
        api.process.wait_http(f"{api.url}/healthz", START_DEADLINE_S)
        peer.process.wait_http(f"{peer.url}/healthz", START_DEADLINE_S)
        api.integration_ids = create_integrations(http, api, math.ceil(total / INTEGRATION_CAP) + 1)
        peer.integration_ids = api.integration_ids  # the same bodies to both
        for server in (api, peer):
            drive(http, server, 0, args.warmup, args.threads)
        rounds = []
        for r in range(args.rounds):
            first = args.warmup + r * args.writes
            order: Sequence[Server] = (api, peer) if r % 2 == 0 else (peer, api)
            results = {s.name: drive(http, s, first, args.writes, args.threads) for s in order}
            rounds.append((results[api.name], results[peer.name]))
    return rounds


class Admitted:
    """Waits until the API has admitted (and published) a number of writes: it admits them
    after answering, and a write is only taken once it is admitted. Nothing else admits here
    (no worker runs), so a write the API never admits fails the run."""

    def __init__(self, database_url: str) -> None:
        self._observer = observer_engine(database_url)

    def wait(self, writes: int) -> None:
        def admitted() -> bool:
            with Session(self._observer) as session:
                stmt = select(func.count()).where(Job.status != JobStatus.PENDING.value)
                return int(session.scalar(stmt) or 0) >= writes

        if not admitted():
            wait_for(admitted, ADMIT_DEADLINE_S, f"{writes} writes admitted")

    def close(self) -> None:
        self._observer.dispose()


# -- report -----------------------------------------------------------------------------------


def report(kind: str, rounds: Sequence[tuple[Accepted, Accepted]]) -> None:
    print(f"\n{kind}: {rounds[0][0].writes} writes per round and server")
    header = ["round", "server", "writes/s", "CPU ms/write", "ratio API / peer"]
    rows = []
    for n, (api, peer) in enumerate(rounds, 1):
        rows.append([str(n), api.server, f"{api.rate:.0f}", f"{api.cpu_ms_per_write:.2f}", ""])
        rows.append(
            [
                str(n),
                peer.server,
                f"{peer.rate:.0f}",
                f"{peer.cpu_ms_per_write:.2f}",
                f"{api.rate / peer.rate:.3f}",
            ]
        )
    print(table(header, rows))
    median = sorted(rounds, key=lambda pair: pair[0].rate / pair[1].rate)[len(rounds) // 2]
    api, peer = median
    cpu_ratio = statistics.median(a.cpu_ms_per_write / p.cpu_ms_per_write for a, p in rounds)
    print(
        f"{kind} ratio API / peer (median round): {api.rate / peer.rate:.3f} "
        f"({api.rate:.0f} / {peer.rate:.0f} writes/s); "
        f"CPU per write API / peer (median): {cpu_ratio:.2f}"
    )


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_accept", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command")
    peer = sub.add_parser("peer", help="serve the peer app (the benchmark starts it)")
    peer.add_argument("--port", type=int, required=True)
    peer.add_argument("--database-url", required=True)
    parser.add_argument("--writes", type=int, default=1000, help="timed writes per round")
    parser.add_argument("--threads", type=int, default=4, help="threads (connections) writing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=100, help="untimed writes to each first")
    parser.add_argument(
        "--database",
        action="append",
        choices=["sqlite", "postgresql"],
        help="repeat for both (the default)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "peer":
        serve_peer(args.database_url, args.port)
        return 0
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"bench.api_accept on {platform.node()} ({os.cpu_count()} CPUs): "
        f"python {platform.python_version()}, commit {commit or '?'}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.threads} threads"
    )
    print(load_average("load average before"))
    results: list[tuple[str, list[tuple[Accepted, Accepted]]]] = []
    with ExitStack() as resources, tempfile.TemporaryDirectory(prefix="pmsq-bench-") as tmp:
        workdir = Path(tmp)
        redis_server = resources.enter_context(RedisServer())
        for kind in args.database or ["sqlite", "postgresql"]:
            databases = Databases(kind, workdir, resources)
            results.append((kind, measure(kind, databases, redis_server, workdir / "logs", args)))
    for kind, rounds in results:
        report(kind, rounds)
    print(f"\n{load_average('load average after')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""pmsq's flow control against Celery's `rate_limit` and dramatiq's rate limiters, side by side.

`python -m bench.flow [--quick] [--jobs N] [--only pmsq,celery,dramatiq,redis]` prints one
table; nothing is asserted. One redis-server (a database per system) and one sandbox PMS serve
every system, each run alone in turn, with the same worker processes (2 workers x 2 processes):

- integration A: 10 requests per SECOND, concurrency 2, 50 ms sandbox latency, a backlog of N
  jobs (2,000; `--quick` 300);
- integration B: generous limits, 20 jobs, measured alone first, then again once A's backlog is
  being worked off.

Columns, all judged from the sandbox's own request records except the retries:

- `window/limit`: most A requests in any 1 s window, over the limit (goal <= 1.00);
- `util`: A's achieved rate (first to last request) over its allowed 10/s (goal >= 0.95);
- `in-flight/cap`: most A requests being served at once, over 2 (goal <= 1.00);
- `isolation`: B's mean latency (submit to the end of its PMS request) with A's backlog present,
  over B's latency alone (goal <= 2);
- `retries`: attempts spent because of rate limiting (goal 0). pmsq: sum of `attempts - 1` over
  the jobs in the job store; Celery: executions beyond one per task; dramatiq: executions that
  ended in `RateLimitExceeded` (each one a retry by the `Retries` middleware).

Then, in-process on the same redis-server with no workers and no database: pmsq admissions per
second (`RedisFlowControl.admit` draining 20,000 jobs in 4 integrations with generous limits),
and Redis round trips per job along the write path (`WriteService.submit` and
`JobRunner.run` with a stub publisher and a stub PMS), counted at the client connection and
broken down by flow-control call.

The dramatiq peer needs `pip install 'dramatiq[redis]'` (bench only). Everything started here
is stopped on the way out, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import httpx
import redis
import redis.connection
from celery import Celery
from sqlalchemy import func, select

from pmsq.api.services.idempotency import IdempotencyKeys
from pmsq.api.services.writes import AcceptedWrite, WriteService
from pmsq.crypto import CredentialCipher
from pmsq.models.account import Account
from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.migrate import upgrade
from pmsq.settings import Settings
from pmsq.workers.connectors import ConnectorFactory
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.backend import Admission, DueIntegrations, Held, Paced
from pmsq.workers.flow.limits import Limits
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.publisher import AdmittedJob
from pmsq.workers.runner import JobRunner

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from support.judge import achieved_rate, max_in_flight, max_in_window  # noqa: E402
from support.processes import ManagedProcess  # noqa: E402
from support.services import (  # noqa: E402
    BinaryNotFoundError,
    PostgresServer,
    RedisServer,
)
from support.stack import Stack  # noqa: E402

from bench.flow_peers import celery_peer  # noqa: E402
from bench.flow_peers.common import (  # noqa: E402
    COUNTER_URL_ENV,
    EXECUTIONS_KEY,
    SANDBOX_URL_ENV,
    THROTTLED_KEY,
)

T = TypeVar("T")

#: Redis databases, one per system so none sees another's keys.
PMSQ_DB, CELERY_DB, COUNTER_DB, DRAMATIQ_DB, DRAMATIQ_LIMITS_DB, MICRO_DB = 1, 2, 3, 4, 5, 6
#: Integration A: `RATE_A` requests per `WINDOW_S`, `CONCURRENCY_A` at once.
RATE_A = 10
WINDOW_S = 1.0
CONCURRENCY_A = 2
#: Integration B's generous limits.
RATE_B = 100
CONCURRENCY_B = 4
#: B's jobs per phase.
B_JOBS = 20
#: Injected sandbox latency of every write (ms).
LATENCY_MS = 50
#: A's requests seen at the sandbox before B's second phase is submitted.
A_STARTED = 5
#: Worker nodes and pool processes per node, for every system.
WORKERS = 2
PROCESSES = 2
#: Threads submitting A's backlog to the pmsq API.
SUBMIT_THREADS = 8
#: Seconds a service gets to come up.
START_DEADLINE_S = 60.0
#: Generous limits of the in-process admission benchmark.
MICRO_JOBS = 20_000
MICRO_INTEGRATIONS = 4
MICRO_ADMIT_BATCH = 50
MICRO_LEASE_S = 60.0
#: Jobs whose Redis round trips are counted (after one warm-up job).
ROUND_TRIP_JOBS = 200


# -- plumbing ---------------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], T], deadline_s: float, what: str, interval_s: float = 0.2
) -> T:
    """Poll `predicate` until truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {deadline_s:g}s (last: {value!r})")
        time.sleep(interval_s)


def db_url(server: RedisServer, db: int) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{db}"


@contextmanager
def running(process: ManagedProcess) -> Iterator[ManagedProcess]:
    """Start `process` and stop its whole process group on the way out; on an error print its
    log tail first (its log directory goes with the run)."""
    process.start()
    try:
        yield process
    except BaseException:
        print(process.describe(), file=sys.stderr)
        raise
    finally:
        process.stop(timeout_s=10)


class Sandbox:
    """The sandbox PMS as judge: its request records, and its latency faults."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(timeout=30)

    def close(self) -> None:
        self._http.close()

    def slow_down(self, tenant: str, latency_ms: int) -> None:
        rule = {"tenant": tenant, "kind": "latency", "latency_ms": latency_ms}
        response = self._http.post(f"{self.url}/_sandbox/faults", json=rule)
        response.raise_for_status()

    def requests(self, tenant: str, since_seq: int = 0) -> list[dict[str, Any]]:
        response = self._http.get(
            f"{self.url}/_sandbox/requests", params={"tenant": tenant, "since_seq": since_seq}
        )
        response.raise_for_status()
        return list(response.json()["requests"])

    def done(self, tenant: str, since_seq: int = 0) -> list[dict[str, Any]]:
        """Requests answered with a 2xx."""
        return [
            r
            for r in self.requests(tenant, since_seq)
            if r["ended_at"] is not None and 200 <= r["status"] < 300
        ]

    def last_seq(self, tenant: str) -> int:
        return max((r["seq"] for r in self.requests(tenant)), default=0)


# -- the systems ------------------------------------------------------------------------------


class System(Protocol):
    """One job-queue setup: two integrations writing to tenants `tenant_a` and `tenant_b`."""

    name: str
    tenant_a: str
    tenant_b: str

    def submit_a(self, n: int) -> None: ...

    def submit_b(self, n: int) -> list[float]:
        """Submit `n` writes of B; returns each one's submit time (`time.time()`)."""
        ...

    def retries_burned(self) -> int: ...


class Pmsq:
    """The real stack: sandbox, API and `WORKERS` Celery workers of `PROCESSES` processes."""

    name = "pmsq"
    tenant_a = "pmsq-a"
    tenant_b = "pmsq-b"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.headers = stack.token("bench-flow")
        self.a_id = stack.integration(
            self.headers, "SANDBOX", self.tenant_a,
            max_request_frequency=RATE_A, max_request_cadence="SECOND",
            max_job_concurrency=CONCURRENCY_A,
        )  # fmt: skip
        self.b_id = stack.integration(
            self.headers, "SANDBOX", self.tenant_b,
            max_request_frequency=RATE_B, max_request_cadence="SECOND",
            max_job_concurrency=CONCURRENCY_B,
        )  # fmt: skip
        self._http = httpx.Client(
            timeout=30,
            limits=httpx.Limits(
                max_connections=SUBMIT_THREADS, max_keepalive_connections=SUBMIT_THREADS
            ),
        )

    def close(self) -> None:
        self._http.close()

    def _write(self, integration_id: str, seq: int) -> None:
        body = {"integration_id": integration_id, "first_name": f"R{seq}", "last_name": "Bench"}
        response = self._http.post(
            f"{self.stack.api_url}/v1/residents/", json=body, headers=self.headers
        )
        if response.status_code != 200:
            raise RuntimeError(f"write refused: {response.status_code} {response.text}")

    def submit_a(self, n: int) -> None:
        with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
            list(pool.map(lambda i: self._write(self.a_id, i), range(n)))

    def submit_b(self, n: int) -> list[float]:
        times = []
        for i in range(n):
            times.append(time.time())
            self._write(self.b_id, i)
        return times

    def retries_burned(self) -> int:
        with self.stack.session_factory() as session:
            stmt = select(func.coalesce(func.sum(Job.attempts - 1), 0)).where(
                Job.integration_id.in_([self.a_id, self.b_id]), Job.attempts > 1
            )
            return int(session.scalar(stmt) or 0)

    def not_succeeded(self) -> int:
        with self.stack.session_factory() as session:
            stmt = select(func.count()).where(
                Job.integration_id.in_([self.a_id, self.b_id]),
                Job.status != JobStatus.SUCCESS.value,
            )
            return int(session.scalar(stmt) or 0)


class CeleryRateLimit:
    """`bench.flow_peers.celery_peer`: Celery's own `rate_limit="10/s"` on A's task."""

    name = "celery rate_limit"
    tenant_a = "celery-a"
    tenant_b = "celery-b"

    def __init__(self, broker_url: str, counter_url: str) -> None:
        self._client = Celery("bench_flow_client", broker=broker_url)
        self._client.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
        self._counters = redis.Redis.from_url(counter_url)
        self._sent = 0

    def close(self) -> None:
        self._client.close()
        self._counters.close()

    def _send(self, task: str, tenant: str, seq: int) -> None:
        self._client.send_task(task, args=[tenant, seq], queue=celery_peer.QUEUE)
        self._sent += 1

    def submit_a(self, n: int) -> None:
        for i in range(n):
            self._send(celery_peer.WRITE_A, self.tenant_a, i)

    def submit_b(self, n: int) -> list[float]:
        times = []
        for i in range(n):
            times.append(time.time())
            self._send(celery_peer.WRITE_B, self.tenant_b, i)
        return times

    def retries_burned(self) -> int:
        executions = sum(
            int(self._counters.get(EXECUTIONS_KEY.format(tenant=t)) or 0)
            for t in (self.tenant_a, self.tenant_b)
        )
        return max(0, executions - self._sent)


class DramatiqLimiters:
    """`bench.flow_peers.dramatiq_peer`: `ConcurrentRateLimiter` + `BucketRateLimiter`."""

    name = "dramatiq limiters"
    tenant_a = "dramatiq-a"
    tenant_b = "dramatiq-b"

    def __init__(self, counter_url: str) -> None:
        # The peer module builds its broker from the environment when first imported.
        from bench.flow_peers import dramatiq_peer

        self._peer = dramatiq_peer
        self._counters = redis.Redis.from_url(counter_url)

    def close(self) -> None:
        self._peer.broker.close()
        self._counters.close()

    def submit_a(self, n: int) -> None:
        for i in range(n):
            self._peer.write.send(self.tenant_a, i, RATE_A, CONCURRENCY_A)

    def submit_b(self, n: int) -> list[float]:
        times = []
        for i in range(n):
            times.append(time.time())
            self._peer.write.send(self.tenant_b, i, RATE_B, CONCURRENCY_B)
        return times

    def retries_burned(self) -> int:
        return sum(
            int(self._counters.get(THROTTLED_KEY.format(tenant=t)) or 0)
            for t in (self.tenant_a, self.tenant_b)
        )


# -- one measurement ------------------------------------------------------------------------


@dataclass
class Row:
    system: str
    a_requests: int = 0
    window_ratio: float = float("nan")
    utilisation: float = float("nan")
    in_flight_ratio: float = float("nan")
    b_alone_s: float = float("nan")
    b_busy_s: float = float("nan")
    retries: int = 0
    a_elapsed_s: float = float("nan")
    #: A's jobs not yet served when B's second phase ended (its backlog was still there).
    a_left_after_b: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def isolation(self) -> float:
        return self.b_busy_s / self.b_alone_s


def mean_latency(submitted: Sequence[float], served: Sequence[dict[str, Any]]) -> float:
    """Mean of (end of request - submit) over the jobs; the pairing does not change a mean."""
    return statistics.fmean(r["ended_at"] for r in served) - statistics.fmean(submitted)


def measure(system: System, sandbox: Sandbox, jobs: int) -> Row:
    """B alone, then A's backlog with B again during it, judged at the sandbox."""
    row = Row(system.name)
    a, b = system.tenant_a, system.tenant_b
    drain_deadline_s = 5 * jobs / RATE_A + 120

    def b_phase(deadline_s: float) -> float:
        mark = sandbox.last_seq(b)
        submitted = system.submit_b(B_JOBS)
        served = wait_for(
            lambda: (done := sandbox.done(b, mark)) and len(done) >= B_JOBS and done,
            deadline_s, f"{system.name}: {B_JOBS} writes of B", interval_s=0.05,
        )  # fmt: skip
        return mean_latency(submitted, served)

    # Warm-up, discarded: every pool process builds its per-process context (imports, DB and
    # HTTP pools) on its first task, which would otherwise count against "B alone".
    b_phase(START_DEADLINE_S)
    row.b_alone_s = b_phase(START_DEADLINE_S)
    started = time.monotonic()
    system.submit_a(jobs)
    wait_for(lambda: len(sandbox.requests(a)) >= A_STARTED, START_DEADLINE_S, "A started")
    row.b_busy_s = b_phase(drain_deadline_s)
    row.a_left_after_b = jobs - len(sandbox.done(a))
    if row.a_left_after_b <= 0:
        row.notes.append("A's backlog was gone before B's second phase ended")
    try:
        wait_for(
            lambda: len(sandbox.done(a)) >= jobs,
            drain_deadline_s - (time.monotonic() - started),
            f"{system.name}: {jobs} writes of A",
            interval_s=1.0,
        )
    except TimeoutError as exc:
        row.notes.append(f"incomplete: {exc}")
    requests = sandbox.requests(a)
    starts = [r["started_at"] for r in requests]
    row.a_requests = len(requests)
    row.a_elapsed_s = max(starts) - min(starts)
    row.window_ratio = max_in_window(starts, WINDOW_S) / RATE_A
    row.utilisation = achieved_rate(starts) / (RATE_A / WINDOW_S)
    row.in_flight_ratio = max_in_flight(requests) / CONCURRENCY_A
    ordered = sorted(starts)
    gap = max((y - x for x, y in itertools.pairwise(ordered)), default=0.0)
    row.notes.append(f"A's longest gap between requests {gap:.2f} s")
    failed = sum(1 for r in requests if r["status"] is None or r["status"] >= 300)
    if failed:
        row.notes.append(f"{failed} of A's requests were not answered with a 2xx")
    row.retries = system.retries_burned()
    return row


# -- the three setups ------------------------------------------------------------------------


def database_url(resources: ExitStack, workdir: Path) -> str:
    """A fresh migrated PostgreSQL database (SQLite when PostgreSQL is not installed)."""
    try:
        postgres = resources.enter_context(PostgresServer())
        url = postgres.create_database("bench_flow")
    except BinaryNotFoundError:
        url = f"sqlite:///{workdir / 'flow.db'}"
    upgrade(url)
    return url


def run_pmsq(resources: ExitStack, stack: Stack, sandbox: Sandbox, jobs: int) -> Row:
    stack.start_worker(concurrency=PROCESSES)  # Stack.start() started the first
    pmsq = Pmsq(stack)
    resources.callback(pmsq.close)
    for tenant in (pmsq.tenant_a, pmsq.tenant_b):
        sandbox.slow_down(tenant, LATENCY_MS)
    row = measure(pmsq, sandbox, jobs)
    not_ok = pmsq.not_succeeded()
    if not_ok:
        row.notes.append(f"{not_ok} jobs not SUCCESS in the job store")
    for worker in stack.workers:
        worker.stop(timeout_s=10)
    return row


def peer_env(server: RedisServer, sandbox: Sandbox) -> dict[str, str]:
    return {
        COUNTER_URL_ENV: db_url(server, COUNTER_DB),
        SANDBOX_URL_ENV: sandbox.url,
        celery_peer.BROKER_URL_ENV: db_url(server, CELERY_DB),
        "BENCH_FLOW_DRAMATIQ_BROKER_URL": db_url(server, DRAMATIQ_DB),
        "BENCH_FLOW_DRAMATIQ_LIMITS_URL": db_url(server, DRAMATIQ_LIMITS_DB),
    }


def celery_worker(n: int, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        [
            sys.executable, "-m", "celery", "-A", "bench.flow_peers.celery_peer",
            "worker", "-Q", celery_peer.QUEUE, "--concurrency", str(PROCESSES),
            "--loglevel", "info", "--hostname", f"flow{n}@%h",
            "--without-gossip", "--without-mingle",
        ],
        name=f"celery{n}", env=env, cwd=REPO_ROOT, log_dir=log_dir,
    )  # fmt: skip


def dramatiq_worker(n: int, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        [
            sys.executable, "-m", "dramatiq", "bench.flow_peers.dramatiq_peer",
            "--processes", str(PROCESSES), "--threads", "1",
        ],
        name=f"dramatiq{n}", env=env, cwd=REPO_ROOT, log_dir=log_dir,
    )  # fmt: skip


def run_celery(server: RedisServer, sandbox: Sandbox, log_dir: Path, jobs: int) -> Row:
    env = peer_env(server, sandbox)
    peer = CeleryRateLimit(env[celery_peer.BROKER_URL_ENV], env[COUNTER_URL_ENV])
    for tenant in (peer.tenant_a, peer.tenant_b):
        sandbox.slow_down(tenant, LATENCY_MS)
    with ExitStack() as stack:
        stack.callback(peer.close)
        workers = [
            stack.enter_context(running(celery_worker(n, env, log_dir)))
            for n in range(1, WORKERS + 1)
        ]
        for worker in workers:
            worker.wait_until(lambda w=worker: "ready." in w.log_text(), START_DEADLINE_S)
        return measure(peer, sandbox, jobs)


def run_dramatiq(server: RedisServer, sandbox: Sandbox, log_dir: Path, jobs: int) -> Row:
    env = peer_env(server, sandbox)
    os.environ.update(env)  # the client side imports the peer module, which reads them
    peer = DramatiqLimiters(env[COUNTER_URL_ENV])
    for tenant in (peer.tenant_a, peer.tenant_b):
        sandbox.slow_down(tenant, LATENCY_MS)
    with ExitStack() as stack:
        stack.callback(peer.close)
        workers = [
            stack.enter_context(running(dramatiq_worker(n, env, log_dir)))
            for n in range(1, WORKERS + 1)
        ]
        for worker in workers:
            worker.wait_until(
                lambda w=worker: w.log_text().count("Worker process is ready") >= PROCESSES,
                START_DEADLINE_S,
            )
        return measure(peer, sandbox, jobs)


# -- pmsq's flow control in-process ------------------------------------------------------------


@dataclass(frozen=True)
class Admissions:
    jobs: int
    integrations: int
    enqueue_s: float
    admit_s: float
    admit_calls: int

    @property
    def per_s(self) -> float:
        return self.jobs / self.admit_s


def measure_admissions(url: str) -> Admissions:
    """Enqueue `MICRO_JOBS` ids in a few integrations, then drain them with `admit` calls."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        flow = RedisFlowControl(client)
        generous = Limits(interval_us=1, tolerance_us=1_000_000, concurrency=1_000_000)
        ids = [f"i{n}" for n in range(MICRO_INTEGRATIONS)]
        for integration_id in ids:
            flow.set_limits(integration_id, generous)
        per = MICRO_JOBS // MICRO_INTEGRATIONS
        started = time.perf_counter()
        for integration_id in ids:
            for chunk in range(0, per, 1000):
                flow.enqueue(
                    integration_id, [f"{integration_id}-j{k}" for k in range(chunk, chunk + 1000)]
                )
        enqueue_s = time.perf_counter() - started

        admitted = calls = 0
        pending = list(ids)
        started = time.perf_counter()
        while pending:
            for integration_id in list(pending):
                admission: Admission = flow.admit(integration_id, MICRO_ADMIT_BATCH, MICRO_LEASE_S)
                calls += 1
                admitted += len(admission.job_ids)
                if admission.next_us is None:
                    pending.remove(integration_id)
        admit_s = time.perf_counter() - started
        if admitted != per * MICRO_INTEGRATIONS:
            raise RuntimeError(f"admitted {admitted} of {per * MICRO_INTEGRATIONS} jobs")
        return Admissions(admitted, MICRO_INTEGRATIONS, enqueue_s, admit_s, calls)
    finally:
        client.flushdb()
        client.close()


class CountingConnection(redis.connection.Connection):
    """Counts round trips: each `send_packed_command` is one request (a whole pipeline is one),
    attributed to the flow-control call that is running (`label`)."""

    round_trips: ClassVar[Counter[str]] = Counter()
    label: ClassVar[str] = "other"

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.round_trips[CountingConnection.label] += 1
        super().send_packed_command(command, check_health)


@contextmanager
def labelled(name: str) -> Iterator[None]:
    outer = CountingConnection.label
    CountingConnection.label = name
    try:
        yield
    finally:
        CountingConnection.label = outer


class LabelledFlow(RedisFlowControl):
    """`RedisFlowControl` naming each call on the write path for the round-trip count."""

    def submit(
        self,
        integration_id: str,
        job_ids: Sequence[str],
        max_jobs: int,
        lease_s: float,
        *,
        delay_s: float = 0.0,
        ahead: bool = False,
    ) -> Admission:
        with labelled("submit"):
            return super().submit(
                integration_id, job_ids, max_jobs, lease_s, delay_s=delay_s, ahead=ahead
            )

    def finish(
        self,
        integration_id: str,
        member: str,
        max_jobs: int,
        lease_s: float,
        *,
        requeue: Sequence[tuple[str, float]] = (),
        pms_headers: Mapping[str, str] | None = None,
    ) -> Admission:
        with labelled("finish"):
            return super().finish(
                integration_id, member, max_jobs, lease_s, requeue=requeue, pms_headers=pms_headers
            )

    def enqueue(self, integration_id: str, job_ids: Sequence[str], delay_s: float = 0.0) -> None:
        with labelled("enqueue"):
            super().enqueue(integration_id, job_ids, delay_s)

    def enqueue_many(self, batches: Mapping[str, Sequence[str]], *, ahead: bool = False) -> None:
        with labelled("enqueue"):
            super().enqueue_many(batches, ahead=ahead)

    def admit(self, integration_id: str, max_jobs: int, lease_s: float) -> Admission:
        with labelled("admit"):
            return super().admit(integration_id, max_jobs, lease_s)

    def reschedule(self, integration_id: str, claim_us: int, next_us: int | None) -> None:
        with labelled("reschedule"):
            super().reschedule(integration_id, claim_us, next_us)

    def pace(self, integration_id: str, job_id: str, delivery: int) -> Paced:
        with labelled("pace"):
            return super().pace(integration_id, job_id, delivery)

    def renew(self, integration_id: str, job_id: str, delivery: int, lease_s: float) -> Held:
        with labelled("renew"):
            return super().renew(integration_id, job_id, delivery, lease_s)

    def hold(
        self,
        integration_id: str,
        job_id: str,
        delivery: int,
        lease_s: float,
        pace_first: bool = False,
    ) -> Held:
        with labelled("hold"):
            return super().hold(integration_id, job_id, delivery, lease_s, pace_first)

    def release(self, integration_id: str, member: str) -> int:
        with labelled("release"):
            return super().release(integration_id, member)

    def record_pms_limits(self, integration_id: str, headers: dict[str, str]) -> None:
        with labelled("record_pms_limits"):
            super().record_pms_limits(integration_id, headers)

    def set_limits(self, integration_id: str, limits: Limits) -> None:
        with labelled("set_limits"):
            super().set_limits(integration_id, limits)

    def claim_due(self, max_integrations: int, claim_s: float) -> DueIntegrations:
        with labelled("claim_due"):
            return super().claim_due(max_integrations, claim_s)


class StubPublisher:
    def __init__(self) -> None:
        self.published: list[AdmittedJob] = []

    def publish(self, job: AdmittedJob) -> None:
        self.published.append(job)


@dataclass(frozen=True)
class RoundTrips:
    jobs: int
    by_call: dict[str, int]

    @property
    def per_job(self) -> float:
        return sum(self.by_call.values()) / self.jobs


def measure_round_trips(url: str, workdir: Path) -> RoundTrips:
    """One write at a time through `WriteService.submit` (what the API does) and
    `JobRunner.run` (what a worker does), the PMS answered by a stub transport."""
    database_url = f"sqlite:///{workdir / 'round_trips.db'}"
    upgrade(database_url)
    settings = Settings(database_url=database_url, redis_url=url, job_lease_s=10.0)
    engine = make_engine(database_url)
    session_factory = make_session_factory(engine)
    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)

    def pms(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"id": "r1", "last_name": "Bench"})

    http = httpx.Client(transport=httpx.MockTransport(pms))
    try:
        client.flushdb()
        cipher = CredentialCipher(settings.fernet_keys)
        with session_factory.begin() as session:
            account = Account(name="bench-rt")
            session.add(account)
            session.flush()
            integration = Integration(
                account_id=account.id, name="rt", integration_vendor="SANDBOX",
                base_url="http://pms.invalid/t/rt",
                credentials_encrypted=cipher.encrypt({"api_key": "bench-key-0123456789"}),
                max_request_frequency=100_000, max_request_cadence="SECOND",
                max_job_concurrency=1000,
            )  # fmt: skip
            session.add(integration)
            session.flush()
            account_id, integration_id = account.id, integration.id
        publisher = StubPublisher()
        dispatcher = Dispatcher(session_factory, publisher, LabelledFlow(client), settings)
        runner = JobRunner(session_factory, ConnectorFactory(cipher, http), dispatcher, settings)
        writes = WriteService(
            session_factory, dispatcher, IdempotencyKeys(settings.idempotency_ttl_s)
        )

        def one_write() -> None:
            body = {"integration_id": integration_id, "last_name": "Bench"}
            accepted = writes.submit(account_id, "residents", body)
            assert isinstance(accepted, AcceptedWrite)  # no Idempotency-Key: never a replay
            if runner.run(accepted.job_id) != JobStatus.SUCCESS:
                raise RuntimeError(f"job {accepted.job_id} did not succeed")

        one_write()  # warm-up: connection, SCRIPT LOAD of each script, limits from the DB
        CountingConnection.round_trips.clear()
        for _ in range(ROUND_TRIP_JOBS):
            one_write()
        if len(publisher.published) != ROUND_TRIP_JOBS + 1:
            raise RuntimeError(f"published {len(publisher.published)} jobs")
        return RoundTrips(ROUND_TRIP_JOBS, dict(CountingConnection.round_trips))
    finally:
        client.flushdb()
        client.close()
        http.close()
        engine.dispose()


# -- report -----------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def report(rows: Sequence[Row], jobs: int) -> None:
    print(
        f"\nA: {RATE_A}/s, concurrency {CONCURRENCY_A}, {LATENCY_MS} ms latency, backlog {jobs}; "
        f"B: {RATE_B}/s, concurrency {CONCURRENCY_B}, {B_JOBS} jobs; "
        f"{WORKERS} workers x {PROCESSES} processes"
    )
    header = [
        "system", "A reqs", "window/limit", "util", "in-flight/cap",
        "B alone ms", "B busy ms", "isolation", "retries", "A s",
    ]  # fmt: skip
    cells = [
        [
            r.system, str(r.a_requests), f"{r.window_ratio:.2f}", f"{r.utilisation:.2f}",
            f"{r.in_flight_ratio:.2f}", f"{r.b_alone_s * 1000:.0f}", f"{r.b_busy_s * 1000:.0f}",
            f"{r.isolation:.2f}", str(r.retries), f"{r.a_elapsed_s:.1f}",
        ]
        for r in rows
    ]  # fmt: skip
    print(table(header, cells))
    print("goals: window/limit <= 1.00, util >= 0.95, in-flight/cap <= 1.00, isolation <= 2, "
          "retries 0")  # fmt: skip
    for r in rows:
        notes = [f"A left when B's second phase ended: {r.a_left_after_b}", *r.notes]
        print(f"  {r.system}: " + "; ".join(notes))


def report_micro(admissions: Admissions | None, trips: RoundTrips | None) -> None:
    if admissions is not None:
        print(
            f"\npmsq admissions on one Redis: {admissions.per_s:,.0f}/s "
            f"({admissions.jobs:,} jobs in {admissions.integrations} integrations, "
            f"{admissions.admit_calls} admit calls of up to {MICRO_ADMIT_BATCH}, "
            f"{admissions.admit_s:.2f} s; enqueue {admissions.jobs / admissions.enqueue_s:,.0f}"
            f"/s) - goal >= 5,000/s"
        )
    if trips is not None:
        parts = ", ".join(
            f"{name} {count / trips.jobs:.2f}"
            for name, count in sorted(trips.by_call.items(), key=lambda kv: -kv[1])
        )
        print(
            f"pmsq Redis round trips per job: {trips.per_job:.2f} ({parts}; {trips.jobs} jobs, "
            "one at a time, submit + run) - goal <= 2"
        )


# -- entry point ------------------------------------------------------------------------------


SYSTEMS = ("pmsq", "celery", "dramatiq", "redis")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flow", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a backlog of 300 instead of 2,000")
    parser.add_argument("--jobs", type=int, default=None, help="A's backlog (overrides --quick)")
    parser.add_argument(
        "--only", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}"
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if args.jobs is None:
        args.jobs = 300 if args.quick else 2000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"bench.flow on {platform.node()} ({os.cpu_count()} CPUs), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, backlog {args.jobs}",
        flush=True,
    )
    rows: list[Row] = []
    admissions: Admissions | None = None
    trips: RoundTrips | None = None
    with tempfile.TemporaryDirectory(prefix="pmsq-bench-flow-") as tmp, ExitStack() as resources:
        workdir = Path(tmp)
        server = resources.enter_context(RedisServer())
        if "redis" in args.only:
            admissions = measure_admissions(db_url(server, MICRO_DB))
            trips = measure_round_trips(db_url(server, MICRO_DB), workdir)
            report_micro(admissions, trips)
        if not set(args.only) - {"redis"}:
            return 0
        stack = Stack(
            database_url(resources, workdir),
            db_url(server, PMSQ_DB),
            env={"PMSQ_JOB_LEASE_S": "10"},
        )
        resources.callback(stack.stop)
        stack.start()  # the sandbox every system writes to, the API and pmsq's first worker
        sandbox = Sandbox(stack.sandbox_url)
        resources.callback(sandbox.close)
        steps: list[tuple[str, Callable[[], Row]]] = [
            ("pmsq", lambda: run_pmsq(resources, stack, sandbox, args.jobs)),
            ("celery", lambda: run_celery(server, sandbox, workdir, args.jobs)),
            ("dramatiq", lambda: run_dramatiq(server, sandbox, workdir, args.jobs)),
        ]
        for name, step in steps:
            if name not in args.only:
                continue
            print(f"running {name} ...", flush=True)
            try:
                rows.append(step())
            except Exception as exc:
                if name == "pmsq":
                    print(stack.logs(), file=sys.stderr)
                rows.append(Row(name, notes=[f"failed: {type(exc).__name__}: {exc}"]))
            print(f"  done: {rows[-1]}", flush=True)
        report(rows, args.jobs)
        report_micro(admissions, trips)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

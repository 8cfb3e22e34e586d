"""Throughput of the whole write path against bare Celery, and linearity of the aggregator.

`python -m bench.pipeline [--jobs N] [--children-small 100] [--children-large 10000]
[--database sqlite|postgresql]` prints two small tables; nothing is asserted, since speed depends
on the machine. Each figure is compared with a peer measured in the same run:

1. End to end: a redis-server, the sandbox PMS, the API and one Celery worker (`--concurrency 2`)
   run as real processes; N resident CREATEs are submitted over HTTP and timed from the first
   submit to the last job's `finished_at` in the job store. The peer is a bare Celery app
   (`bench.noop_app`) with the same delivery settings on the same redis-server: N no-op tasks, from
   the first send to the last increment of a Redis counter.
2. Aggregation: in-process, a root spawns N children through `finish_job`, then every child is
   claimed and finished in its own transaction, as a worker does. Time per child at a small and a
   large N; with O(1) aggregation their ratio is about 1.

Everything started here is stopped on the way out, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import redis
from celery import Celery
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from bench import noop_app
from pmsq.api.auth import create_token
from pmsq.models.account import Account
from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.enums import TERMINAL_STATUSES, JobStatus, WriteStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.migrate import upgrade
from pmsq.pms.connector import ChildSpec
from pmsq.workers.aggregator import finish_job
from pmsq.workers.outcome import write_outcome
from pmsq.workers.repository import JobRepository
from pmsq.workers.transitions import transition

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from support.processes import ManagedProcess  # noqa: E402
from support.services import PostgresServer, RedisServer, free_port  # noqa: E402

T = TypeVar("T")

#: Redis database of pmsq's broker and flow-control state.
PMSQ_REDIS_DB = 1
#: Redis database of the no-op baseline's broker and counter.
NOOP_REDIS_DB = 2
#: Sandbox tenant the benchmark integration writes to.
TENANT = "bench"
#: Seconds each service gets to come up.
START_DEADLINE_S = 60.0
#: Seconds the measured jobs get to finish before the run is declared stuck.
FINISH_DEADLINE_S = 600.0
#: Pause between polls of the job store or the Redis counter.
POLL_INTERVAL_S = 0.2
#: Pool size of the worker processes (both pmsq's and the baseline's).
WORKER_CONCURRENCY = 2
#: Share of the large aggregation run whose head and tail are compared (drift within one run).
DRIFT_SHARE = 0.1
FINAL = frozenset(s.value for s in TERMINAL_STATUSES)


# -- plumbing ---------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], T], deadline_s: float, what: str) -> T:
    """Poll `predicate` every `POLL_INTERVAL_S` until truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {deadline_s:g}s (last: {value!r})")
        time.sleep(POLL_INTERVAL_S)


class Databases:
    """Fresh migrated databases of one backend: SQLite files in `workdir`, or PostgreSQL
    databases on one throwaway cluster started on first use and stopped with `resources`."""

    def __init__(self, kind: str, workdir: Path, resources: ExitStack) -> None:
        self.kind = kind
        self._workdir = workdir
        self._resources = resources
        self._postgres: PostgresServer | None = None

    def new(self, name: str) -> str:
        if self.kind == "sqlite":
            url = f"sqlite:///{self._workdir / f'{name}.db'}"
        else:
            if self._postgres is None:
                self._postgres = self._resources.enter_context(PostgresServer())
            url = self._postgres.create_database(name)
        upgrade(url)
        return url


def observer_engine(database_url: str) -> Engine:
    """An engine for the benchmark's own polling reads.

    `pmsq.models.db.make_engine` opens every SQLite transaction with `BEGIN IMMEDIATE`, so a poll
    through it would queue for the write lock with the workers; a plain engine reads in WAL
    without taking it, and the poll does not slow down what it measures.
    """
    if database_url.startswith("sqlite"):
        return create_engine(database_url)
    return make_engine(database_url)


@contextmanager
def running(process: ManagedProcess) -> Iterator[ManagedProcess]:
    """Start `process`, yield it, and stop its whole process group on the way out; on an error,
    print its log tail to stderr first (its log directory is deleted with the run)."""
    process.start()
    try:
        yield process
    except BaseException:
        print(process.describe(), file=sys.stderr)
        raise
    finally:
        process.stop(timeout_s=10)


def celery_worker(
    app: str, queue: str, hostname: str, env: dict[str, str], log_dir: Path
) -> ManagedProcess:
    return ManagedProcess(
        [
            sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue,
            "--concurrency", str(WORKER_CONCURRENCY), "--loglevel", "info",
            "--hostname", f"{hostname}@%h", "--without-gossip", "--without-mingle",
        ],
        name=hostname, env=env, cwd=REPO_ROOT, log_dir=log_dir,
    )  # fmt: skip


def redis_url_of(server: RedisServer, db: int) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{db}"


# -- part 1: end to end -----------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """One end-to-end run: `jobs` units of work from the first submit to the last finish."""

    name: str
    jobs: int
    submit_s: float
    total_s: float
    failed: int = 0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None

    @property
    def rate(self) -> float:
        return self.jobs / self.total_s

    @property
    def submit_rate(self) -> float:
        return self.jobs / self.submit_s


class PmsqRun:
    """The write path as real processes, driven over HTTP."""

    def __init__(self, redis_server: RedisServer, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.env = {
            "PMSQ_DATABASE_URL": database_url,
            "PMSQ_REDIS_URL": redis_url_of(redis_server, PMSQ_REDIS_DB),
            "PMSQ_AUTO_MIGRATE": "false",
            # The sandbox listens on loopback, which pmsq refuses unless allowed.
            "PMSQ_ALLOWED_OUTBOUND_NETWORKS": "127.0.0.0/8",
        }
        self.sandbox_port = free_port()
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"

    def measure(self, jobs: int, threads: int) -> Throughput:
        cli = [sys.executable, "-m", "pmsq.cli"]
        sandbox = ManagedProcess(
            [*cli, "sandbox", "--port", str(self.sandbox_port)],
            name="sandbox", env=self.env, cwd=REPO_ROOT, log_dir=self.log_dir,
        )  # fmt: skip
        api = ManagedProcess(
            [*cli, "api", "--port", str(self.api_port)],
            name="api", env=self.env, cwd=REPO_ROOT, log_dir=self.log_dir,
        )  # fmt: skip
        worker = celery_worker("pmsq.workers.app", "pmsq.jobs", "pmsq", self.env, self.log_dir)
        engine = make_engine(self.database_url)
        observer = observer_engine(self.database_url)
        http = httpx.Client(
            timeout=30,
            limits=httpx.Limits(max_connections=threads, max_keepalive_connections=threads),
        )
        try:
            with ExitStack() as stack:
                stack.enter_context(running(sandbox))
                stack.enter_context(running(api))
                stack.enter_context(running(worker))
                sandbox.wait_http(f"{self.sandbox_url}/_sandbox/health", START_DEADLINE_S)
                api.wait_http(f"{self.api_url}/healthz", START_DEADLINE_S)
                worker.wait_until(lambda: "ready." in worker.log_text(), START_DEADLINE_S)
                return self._drive(make_session_factory(engine), observer, http, jobs, threads)
        finally:
            http.close()
            engine.dispose()
            observer.dispose()

    def _drive(
        self,
        session_factory: sessionmaker[Session],
        observer: Engine,
        http: httpx.Client,
        jobs: int,
        threads: int,
    ) -> Throughput:
        with session_factory.begin() as session:
            headers = {"Authorization": f"Bearer {create_token(session, 'bench')}"}
        integration_id = self._integration(http, headers)

        def submit(i: int) -> str:
            body = {"integration_id": integration_id, "first_name": f"R{i}", "last_name": "Bench"}
            response = http.post(f"{self.api_url}/v1/residents/", json=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"write {i} refused: {response.status_code} {response.text}")
            return str(response.json()["job_id"])

        # One write first, so imports, connection pools and the pool children's lazy context
        # are warm before the clock starts.
        warmup = submit(-1)
        wait_for(lambda: self._final_count(observer, [warmup]) == 1, START_DEADLINE_S, "warm-up")

        started_at = datetime.now(UTC)
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            ids = list(pool.map(submit, range(jobs)))
        submit_s = time.monotonic() - started
        wait_for(
            lambda: self._final_count(observer, ids) >= jobs,
            FINISH_DEADLINE_S,
            f"{jobs} writes final",
        )
        return self._summary(observer, ids, started_at, submit_s)

    def _integration(self, http: httpx.Client, headers: dict[str, str]) -> str:
        body = {
            "name": "bench",
            "integration_vendor": "SANDBOX",
            "active": True,
            "base_url": f"{self.sandbox_url}/t/{TENANT}",
            "credentials": {"api_key": "bench-key-0123456789"},
            "max_job_concurrency": 100,
            "max_request_frequency": 100_000,
            "max_request_cadence": "SECOND",
        }
        response = http.post(f"{self.api_url}/v1/admin/integrations/", json=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"integration refused: {response.status_code} {response.text}")
        return str(response.json()["result"]["id"])

    @staticmethod
    def _final_count(observer: Engine, ids: Sequence[str]) -> int:
        with Session(observer) as session:
            stmt = select(func.count()).where(Job.id.in_(ids), Job.status.in_(FINAL))
            return int(session.scalar(stmt) or 0)

    @staticmethod
    def _summary(
        observer: Engine, ids: Sequence[str], started_at: datetime, submit_s: float
    ) -> Throughput:
        with Session(observer) as session:
            rows = session.execute(
                select(Job.status, Job.created_at, Job.finished_at).where(Job.id.in_(ids))
            ).all()
        finished = [row.finished_at for row in rows if row.finished_at is not None]
        latencies = sorted(
            (row.finished_at - row.created_at).total_seconds()
            for row in rows
            if row.finished_at is not None
        )
        return Throughput(
            name="pmsq write path",
            jobs=len(ids),
            submit_s=submit_s,
            total_s=(max(finished) - started_at).total_seconds(),
            failed=sum(1 for row in rows if row.status != JobStatus.SUCCESS.value),
            latency_p50_s=statistics.median(latencies),
            latency_p95_s=latencies[int(0.95 * (len(latencies) - 1))],
        )


class NoopRun:
    """Bare Celery with pmsq's delivery settings (`bench.noop_app`), a no-op task."""

    def __init__(self, redis_server: RedisServer, log_dir: Path) -> None:
        self.url = redis_url_of(redis_server, NOOP_REDIS_DB)
        self.log_dir = log_dir
        self.env = {"BENCH_NOOP_BROKER_URL": self.url, "BENCH_NOOP_COUNTER_URL": self.url}

    def measure(self, jobs: int) -> Throughput:
        worker = celery_worker(
            "bench.noop_app", noop_app.NOOP_QUEUE, "noop", self.env, self.log_dir
        )
        client = Celery("bench_noop_client", broker=self.url)
        client.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
        counter = redis.Redis.from_url(self.url)
        try:
            with running(worker):
                worker.wait_until(lambda: "ready." in worker.log_text(), START_DEADLINE_S)
                return self._drive(client, counter, jobs)
        finally:
            counter.close()
            client.close()

    def _drive(self, client: Celery, counter: redis.Redis, jobs: int) -> Throughput:
        def done() -> int:
            return int(counter.get(noop_app.COUNTER_KEY) or 0)

        def send() -> None:
            client.send_task(noop_app.NOOP_TASK, queue=noop_app.NOOP_QUEUE)

        send()
        wait_for(lambda: done() == 1, START_DEADLINE_S, "no-op warm-up")
        counter.delete(noop_app.COUNTER_KEY, noop_app.LAST_KEY)

        started_at = time.time()
        started = time.monotonic()
        for _ in range(jobs):
            send()
        submit_s = time.monotonic() - started
        wait_for(lambda: done() >= jobs, FINISH_DEADLINE_S, f"{jobs} no-op tasks run")
        last = float(counter.get(noop_app.LAST_KEY) or 0)
        return Throughput("bare Celery no-op", jobs, submit_s, last - started_at)


# -- part 2: aggregation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregation:
    backend: str
    children: int
    spawn_s: float
    finish_s: float
    #: Mean seconds per child over the first and the last `DRIFT_SHARE` of the children.
    head_per_child_s: float
    tail_per_child_s: float
    outcome: WriteStatus

    @property
    def per_child_s(self) -> float:
        return self.finish_s / self.children


def measure_aggregation(database_url: str, backend: str, children: int) -> Aggregation:
    """Spawn `children` from a RUNNING root, then claim and finish each in its own transaction."""
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    try:
        root_id = _running_root(factory)
        now = datetime.now(UTC)
        spec = ChildSpec("contacts", "CREATE", None, {"email_1": "bench@example.com"})
        started = time.perf_counter()
        with factory.begin() as session:
            root = JobRepository(session).lock(root_id)
            assert root is not None
            spawned = finish_job(
                session,
                root,
                JobStatus.SUCCESS,
                now,
                max_jobs_per_tree=children + 1,
                created_record_id="bench-root",
                children=[spec] * children,
            )
            session.flush()
            child_ids = [child.id for child in spawned]
        spawn_s = time.perf_counter() - started

        laps: list[float] = []
        for child_id in child_ids:
            lap = time.perf_counter()
            with factory.begin() as session:
                job = JobRepository(session).lock(child_id)
                assert job is not None
                now = datetime.now(UTC)
                transition(job, JobStatus.QUEUED, now)
                transition(job, JobStatus.RUNNING, now)
                finish_job(session, job, JobStatus.SUCCESS, now, max_jobs_per_tree=children + 1)
            laps.append(time.perf_counter() - lap)

        with factory() as session:
            root = session.get(Job, root_id)
            assert root is not None
            outcome = write_outcome(session, root).write_status
        edge = max(1, int(len(laps) * DRIFT_SHARE))
        return Aggregation(
            backend=backend,
            children=children,
            spawn_s=spawn_s,
            finish_s=sum(laps),
            head_per_child_s=statistics.fmean(laps[:edge]),
            tail_per_child_s=statistics.fmean(laps[-edge:]),
            outcome=outcome,
        )
    finally:
        engine.dispose()


def _running_root(factory: sessionmaker[Session]) -> str:
    now = datetime.now(UTC)
    with factory.begin() as session:
        account = Account(name="bench")
        session.add(account)
        session.flush()
        integration = Integration(account_id=account.id, name="bench", integration_vendor="SANDBOX")
        session.add(integration)
        session.flush()
        root = Job(
            account_id=account.id,
            integration_id=integration.id,
            model="applicants",
            action="CREATE",
            payload={"last_name": "Bench"},
            status=JobStatus.PENDING.value,
        )
        root.root_job_id = root.id = "bench-root"
        session.add(root)
        transition(root, JobStatus.QUEUED, now)
        transition(root, JobStatus.RUNNING, now)
        return root.id


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


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def report_throughput(pmsq: Throughput, noop: Throughput) -> None:
    print(f"\nEnd to end, {pmsq.jobs} jobs, one worker with --concurrency {WORKER_CONCURRENCY}")
    rows = [
        [
            run.name,
            str(run.jobs),
            f"{run.submit_rate:.0f}",
            f"{run.total_s:.2f}",
            f"{run.rate:.1f}",
            ms(run.latency_p50_s),
            ms(run.latency_p95_s),
            str(run.failed),
        ]
        for run in (pmsq, noop)
    ]
    header = ["run", "jobs", "submit/s", "total s", "jobs/s", "p50 ms", "p95 ms", "not ok"]
    print(table(header, rows))
    print(f"ratio pmsq / bare Celery: {pmsq.rate / noop.rate:.3f}")


def report_aggregation(runs: Sequence[Aggregation]) -> None:
    print("\nAggregation: finish every child of one root, one transaction per child")
    header = [
        "backend",
        "children",
        "spawn ms",
        "finish s",
        "us/child",
        "head us",
        "tail us",
        "root",
    ]
    rows = [
        [
            run.backend,
            f"{run.children:,}",
            ms(run.spawn_s),
            f"{run.finish_s:.2f}",
            f"{run.per_child_s * 1e6:.0f}",
            f"{run.head_per_child_s * 1e6:.0f}",
            f"{run.tail_per_child_s * 1e6:.0f}",
            run.outcome.value,
        ]
        for run in runs
    ]
    print(table(header, rows))
    by_backend: dict[str, list[Aggregation]] = {}
    for run in runs:
        by_backend.setdefault(run.backend, []).append(run)
    for backend, pair in by_backend.items():
        small, large = min(pair, key=lambda r: r.children), max(pair, key=lambda r: r.children)
        print(
            f"ratio {backend} per child, {large.children:,} / {small.children:,} children: "
            f"{large.per_child_s / small.per_child_s:.2f}  "
            f"(tail / head within {large.children:,}: "
            f"{large.tail_per_child_s / large.head_per_child_s:.2f})"
        )


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=500, help="writes (and no-op tasks) to run")
    parser.add_argument("--threads", type=int, default=4, help="threads submitting writes")
    parser.add_argument("--children-small", type=int, default=100)
    parser.add_argument("--children-large", type=int, default=10_000)
    parser.add_argument(
        "--small-repeats",
        type=int,
        default=5,
        help="fresh trees of --children-small to run; the median is reported (a small tree's "
        "few hundred milliseconds are easily disturbed)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--skip-e2e", action="store_true", help="only the aggregation part")
    parser.add_argument("--skip-aggregation", action="store_true", help="only the e2e part")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"bench.pipeline on {platform.node()} ({os.cpu_count()} CPUs): "
        f"python {platform.python_version()}, database {args.database}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(load_average("load average before"))
    with ExitStack() as resources, tempfile.TemporaryDirectory(prefix="pmsq-bench-") as tmp:
        workdir = Path(tmp)
        databases = Databases(args.database, workdir, resources)
        if not args.skip_e2e:
            redis_server = resources.enter_context(RedisServer())
            log_dir = workdir / "logs"
            pmsq = PmsqRun(redis_server, databases.new("e2e"), log_dir).measure(
                args.jobs, args.threads
            )
            noop = NoopRun(redis_server, log_dir).measure(args.jobs)
            report_throughput(pmsq, noop)
        if not args.skip_aggregation:
            backends = ["sqlite"] if args.database == "sqlite" else ["sqlite", "postgresql"]
            runs = []
            for backend in backends:
                source = (
                    databases
                    if backend == args.database
                    else Databases("sqlite", workdir, resources)
                )
                small = sorted(
                    (
                        measure_aggregation(
                            source.new(f"agg_{backend}_small_{r}"), backend, args.children_small
                        )
                        for r in range(args.small_repeats)
                    ),
                    key=lambda run: run.per_child_s,
                )
                runs.append(small[len(small) // 2])  # the median run
                large = source.new(f"agg_{backend}_large")
                runs.append(measure_aggregation(large, backend, args.children_large))
            report_aggregation(runs)
    print(f"\n{load_average('load average after')}")
    return 0


def load_average(label: str) -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{label} (1/5/15 min): {one:.2f} {five:.2f} {fifteen:.2f}"


if __name__ == "__main__":
    sys.exit(main())

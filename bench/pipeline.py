"""Cost of the whole write path against bare Celery, and linearity of the aggregator.

`python -m bench.pipeline [--jobs N] [--workers K] [--database sqlite|postgresql] [--repeat R]
[--json FILE] [--profile DIR] [--verbose]` prints small tables; nothing is asserted, since speed
depends on the machine. Each figure is compared with a peer measured in the same run; with
`--repeat R`, R rounds of both, alternating which goes first, and their medians:

1. The write path: throwaway redis-servers (pmsq's flow control and its broker on one each, so
   their round trips are told apart), the sandbox PMS, the API and K Celery workers
   (`--concurrency 2` each) run as real processes. The peer is a bare Celery app
   (`bench.noop_app`) with the same delivery settings and the same pool, on a redis-server of
   its own (its counter on another). Each system, in turn, after a warm-up:
   - idle: its CPU and Redis round trips per second with nothing to do;
   - end to end: N resident CREATEs submitted over HTTP (N no-op tasks sent), from the first
     submit to the last job's finish;
   - accept, then drain: the workers stop consuming (Celery's `cancel_consumer`), N more are
     submitted, then the workers consume again and drain them: jobs/s from that moment to the
     last finish. The accept phase is the API's cost, the drain the workers'.
   Every phase reports user + system CPU per job of the system's own processes (read from
   `/proc`: the API or the peer's sending thread, every worker process with its pool, beat with
   `--beat`), of the servers it uses apart ("infrastructure": redis-server, PostgreSQL, the
   sandbox), and Redis round trips per job (`total_reads_processed` deltas), broker and flow
   control apart, with `INFO commandstats` per command under `--verbose`.
2. Aggregation: in-process, a root spawns N children through `finish_job`, then every child is
   claimed and finished in its own transaction, as a worker does. Time per child at a small and a
   large N; with O(1) aggregation their ratio is about 1.

Everything started here is stopped on the way out, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
from celery import Celery
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from bench import noop_app
from bench.costs import (
    CpuMeter,
    Profile,
    Profiler,
    RedisCounts,
    RedisMeter,
    RedisMonitor,
    difference,
    find_py_spy,
    lua_script_names,
    summarise,
)
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

#: Sandbox tenant the benchmark integration writes to.
TENANT = "bench"
#: Celery queue of pmsq's jobs (the default `PMSQ_JOB_QUEUE`).
PMSQ_QUEUE = "pmsq.jobs"
#: Seconds each service gets to come up.
START_DEADLINE_S = 60.0
#: Seconds the measured jobs get to finish before the run is declared stuck.
FINISH_DEADLINE_S = 600.0
#: Seconds a remote-control command (cancel/add consumer) waits for every worker's reply.
CONTROL_TIMEOUT_S = 30.0
#: Pause between polls of the job store or the Redis counter.
POLL_INTERVAL_S = 0.2
#: Pool size of each worker process (both pmsq's and the baseline's).
WORKER_CONCURRENCY = 2
#: Warm-up jobs per pool process, so each is likely to have run one (imports, lazy clients)
#: before the clock starts.
WARMUP_PER_POOL_PROCESS = 2
#: Share of the large aggregation run whose head and tail are compared (drift within one run).
DRIFT_SHARE = 0.1
#: Functions listed per profile.
PROFILE_TOP = 25
#: The issue's goal for CPU per write, pmsq / bare Celery.
CPU_RATIO_GOAL = 3.0
#: The issue's goal for Redis round trips per job on the hot path.
ROUND_TRIPS_GOAL = 2.0
FINAL = frozenset(s.value for s in TERMINAL_STATUSES)

#: Phases of one system's run, in order.
IDLE, END_TO_END, ACCEPT, DRAIN = "idle", "end to end", "accept", "drain"
#: CPU groups of a system's own processes: the API (pmsq) or the sending thread (the peer),
#: the worker processes with their pools, beat.
FRONT, WORKERS, BEAT = "front", "workers", "beat"
#: CPU groups of the servers a system uses, reported apart.
INFRA_REDIS, INFRA_DATABASE, INFRA_SANDBOX = "redis", "database", "sandbox"
#: Redis servers by role.
BROKER, FLOW = "broker", "flow control"


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

    @property
    def server_pid(self) -> int | None:
        """The postmaster's process id (its backends are its children); None on SQLite, whose
        work is done inside the processes that use it."""
        if self._postgres is None or self._postgres.process is None:
            return None
        return self._postgres.process.pid


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


def redis_url_of(server: RedisServer, db: int = 0) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{db}"


def server_pid(server: RedisServer) -> int:
    assert server.process is not None, "started by entering it"
    return server.process.pid


def control_consumers(control: Celery, command: str, queue: str, workers: int) -> None:
    """Tell every worker to stop (`cancel_consumer`) or resume (`add_consumer`) consuming
    `queue`, and return once all `workers` have said they did; RuntimeError otherwise.

    The worker processes stay up and warm: a drain measured after `add_consumer` is the
    workers' work, not their start-up."""
    send = getattr(control.control, command)
    replies = send(queue, reply=True, timeout=CONTROL_TIMEOUT_S, limit=workers)
    answers = [answer for reply in replies for answer in reply.values()]
    if len(answers) < workers or any("ok" not in answer for answer in answers):
        raise RuntimeError(f"{command} {queue}: {workers} workers asked, answers {answers!r}")


# -- part 1: the write path's cost ------------------------------------------------------------


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


@dataclass(frozen=True)
class Drain:
    """`jobs` accepted while no worker consumed (in `accept_s`), then drained in `drain_s`
    from the moment the workers were told to consume again to the last finish."""

    jobs: int
    accept_s: float
    drain_s: float
    failed: int = 0

    @property
    def rate(self) -> float:
        return self.jobs / self.drain_s

    @property
    def accept_rate(self) -> float:
        return self.jobs / self.accept_s


@dataclass(frozen=True)
class PhaseCost:
    """What one phase of one system cost: CPU seconds of its own processes by group
    (`FRONT`, `WORKERS`, `BEAT`) and of its servers (`INFRA_*`), and what each of its
    redis-servers served (by role, `BROKER` / `FLOW`), over `wall_s` seconds and `jobs` jobs
    (0 for the idle phase). With `--monitor`, `sent` holds the commands clients sent to each
    redis-server, by name."""

    phase: str
    jobs: int
    wall_s: float
    cpu_s: dict[str, float]
    infra_cpu_s: dict[str, float]
    redis: dict[str, RedisCounts]
    sent: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def cpu_total_s(self) -> float:
        return sum(self.cpu_s.values())

    @property
    def round_trips(self) -> int:
        return sum(counts.round_trips for counts in self.redis.values())

    def per_unit(self, value: float) -> float:
        """`value` per job, or per second for the idle phase."""
        return value / (self.jobs or self.wall_s)


@dataclass(frozen=True)
class SystemResult:
    """Everything measured for one system (pmsq or the peer) in one run."""

    name: str
    end_to_end: Throughput
    drain: Drain | None
    phases: list[PhaseCost]
    profiles: list[Profile] = field(default_factory=list)

    def phase(self, name: str) -> PhaseCost | None:
        return next((p for p in self.phases if p.phase == name), None)


@dataclass(frozen=True)
class Round:
    """One pmsq run and its peer's, measured back to back (`--repeat`)."""

    pmsq: SystemResult
    noop: SystemResult

    def cpu_per_job_s(self, run: SystemResult) -> float | None:
        """`run`'s CPU per job end to end, its own processes only."""
        phase = run.phase(END_TO_END)
        return None if phase is None or not phase.jobs else phase.cpu_total_s / phase.jobs

    @property
    def cpu_ratio(self) -> float | None:
        ours, theirs = self.cpu_per_job_s(self.pmsq), self.cpu_per_job_s(self.noop)
        return None if ours is None or not theirs else ours / theirs

    @property
    def throughput_ratio(self) -> float:
        return self.pmsq.end_to_end.rate / self.noop.end_to_end.rate

    @property
    def flow_round_trips(self) -> float | None:
        """pmsq's flow-control round trips per job, end to end."""
        phase = self.pmsq.phase(END_TO_END)
        if phase is None or FLOW not in phase.redis:
            return None
        return phase.per_unit(phase.redis[FLOW].round_trips)


@dataclass(frozen=True)
class RoundsSummary:
    """What `--repeat` rounds say together. The machine's speed moves between runs (the
    peer's CPU per task by half or more), which moves each round's ratios with it: the
    median is the figure, the pooled CPU ratio (all of pmsq's CPU over all of the peer's)
    a second reading of it, and the spread says how far one round is to be trusted."""

    rounds: int
    throughput_ratio_median: float
    throughput_ratio_range: tuple[float, float]
    cpu_ratio_median: float | None
    cpu_ratio_range: tuple[float, float] | None
    cpu_ratio_pooled: float | None
    rounds_within_cpu_goal: int
    flow_round_trips_median: float | None


def summarise_rounds(rounds: Sequence[Round], cpu_goal: float = CPU_RATIO_GOAL) -> RoundsSummary:
    throughput = [r.throughput_ratio for r in rounds]
    measured: list[tuple[float, float]] = []  # pmsq's and the peer's CPU per job, each round
    for r in rounds:
        ours, theirs = r.cpu_per_job_s(r.pmsq), r.cpu_per_job_s(r.noop)
        if ours is not None and theirs:
            measured.append((ours, theirs))
    cpu = [ours / theirs for ours, theirs in measured]
    pooled = sum(o for o, _ in measured) / sum(t for _, t in measured) if measured else None
    flow = [f for r in rounds if (f := r.flow_round_trips) is not None]
    return RoundsSummary(
        rounds=len(rounds),
        throughput_ratio_median=statistics.median(throughput),
        throughput_ratio_range=(min(throughput), max(throughput)),
        cpu_ratio_median=statistics.median(cpu) if cpu else None,
        cpu_ratio_range=(min(cpu), max(cpu)) if cpu else None,
        cpu_ratio_pooled=pooled,
        rounds_within_cpu_goal=sum(1 for c in cpu if c <= cpu_goal),
        flow_round_trips_median=statistics.median(flow) if flow else None,
    )


class Meters:
    """The CPU and Redis meters of one system; `start` and `finish` bracket a phase."""

    def __init__(self) -> None:
        self.cpu = CpuMeter()
        self.infra = CpuMeter()
        self.redis: dict[str, RedisMeter] = {}
        self.monitors: dict[str, RedisMonitor] = {}

    def start(self) -> tuple[float, dict[str, float], dict[str, float], dict[str, RedisCounts]]:
        redis_counts = {role: meter.sample() for role, meter in self.redis.items()}
        for monitor in self.monitors.values():
            monitor.take()  # what came before the phase
        return time.monotonic(), self.cpu.sample(), self.infra.sample(), redis_counts

    def finish(
        self,
        start: tuple[float, dict[str, float], dict[str, float], dict[str, RedisCounts]],
        phase: str,
        jobs: int,
        extra_cpu_s: Mapping[str, float] | None = None,
    ) -> PhaseCost:
        """The phase begun at `start`; `extra_cpu_s` adds CPU measured elsewhere (the peer's
        sending thread) to the system's own groups."""
        started, cpu, infra, redis_counts = start
        cpu_s = difference(self.cpu.sample(), cpu)
        infra_s = difference(self.infra.sample(), infra)
        counts = {
            role: RedisMeter.between(meter.sample(), redis_counts[role])
            for role, meter in self.redis.items()
        }
        sent = {role: monitor.take() for role, monitor in self.monitors.items()}
        for role in self.monitors:
            counts[role] = without_marker(counts[role])
        for group, seconds in (extra_cpu_s or {}).items():
            cpu_s[group] = cpu_s.get(group, 0.0) + seconds
        return PhaseCost(phase, jobs, time.monotonic() - started, cpu_s, infra_s, counts, sent)

    def watch_redis(self, role: str, url: str, monitor: bool) -> None:
        """Count what the redis-server at `url` serves as `role`; with `monitor`, also the
        commands its clients send (MONITOR)."""
        self.redis[role] = RedisMeter(url)
        if monitor:
            self.monitors[role] = RedisMonitor(url, lua_script_names(REPO_ROOT))

    def close(self) -> None:
        for meter in self.redis.values():
            meter.close()
        for monitor in self.monitors.values():
            monitor.close()


def without_marker(counts: RedisCounts) -> RedisCounts:
    """`counts` less the `ECHO` a `RedisMonitor` sent at the start of the phase."""
    calls = dict(counts.calls)
    calls["echo"] = calls.get("echo", 0) - 1
    return RedisCounts(counts.round_trips - 1, {k: v for k, v in calls.items() if v})


@dataclass(frozen=True)
class RunOptions:
    """How each system is driven (the same for both, but `threads`)."""

    jobs: int
    threads: int
    workers: int
    idle_s: float
    drain: bool
    beat: bool
    profile_dir: Path | None
    #: The bench integration's concurrency cap: how many jobs may be admitted at once.
    max_job_concurrency: int = 100
    #: Count the commands clients send to each redis-server (MONITOR).
    monitor: bool = False
    #: py-spy counts only GIL holders (CPU) rather than every active thread (wall time).
    profile_cpu_only: bool = True


class PmsqRun:
    """The write path as real processes, driven over HTTP."""

    def __init__(self, database_url: str, database_pid: int | None, log_dir: Path) -> None:
        self.database_url = database_url
        self.database_pid = database_pid
        self.log_dir = log_dir
        self.sandbox_port = free_port()
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"

    def measure(self, options: RunOptions) -> SystemResult:
        with ExitStack() as stack:
            flow_redis = stack.enter_context(RedisServer())
            broker_redis = stack.enter_context(RedisServer())
            env = {
                "PMSQ_DATABASE_URL": self.database_url,
                "PMSQ_REDIS_URL": redis_url_of(flow_redis),
                # On a server of its own, so broker and flow-control round trips are told apart.
                "PMSQ_BROKER_URL": redis_url_of(broker_redis),
                "PMSQ_AUTO_MIGRATE": "false",
                # The sandbox listens on loopback, which pmsq refuses unless allowed.
                "PMSQ_ALLOWED_OUTBOUND_NETWORKS": "127.0.0.0/8",
            }
            cli = [sys.executable, "-m", "pmsq.cli"]
            sandbox = ManagedProcess(
                [*cli, "sandbox", "--port", str(self.sandbox_port)],
                name="sandbox", env=env, cwd=REPO_ROOT, log_dir=self.log_dir,
            )  # fmt: skip
            api = ManagedProcess(
                [*cli, "api", "--port", str(self.api_port)],
                name="api", env=env, cwd=REPO_ROOT, log_dir=self.log_dir,
            )  # fmt: skip
            workers = [
                celery_worker("pmsq.workers.app", PMSQ_QUEUE, f"pmsq{i}", env, self.log_dir)
                for i in range(options.workers)
            ]
            for process in [sandbox, api, *workers]:
                stack.enter_context(running(process))
            meters = Meters()
            stack.callback(meters.close)
            if options.beat:
                beat = ManagedProcess(
                    [
                        sys.executable, "-m", "celery", "-A", "pmsq.workers.app", "beat",
                        "--loglevel", "info", "--schedule", str(self.log_dir / "beat-schedule"),
                    ],
                    name="beat", env=env, cwd=REPO_ROOT, log_dir=self.log_dir,
                )  # fmt: skip
                stack.enter_context(running(beat))
                meters.cpu.watch(BEAT, beat.pid)
            sandbox.wait_http(f"{self.sandbox_url}/_sandbox/health", START_DEADLINE_S)
            api.wait_http(f"{self.api_url}/healthz", START_DEADLINE_S)
            for worker in workers:
                worker.wait_until(lambda w=worker: "ready." in w.log_text(), START_DEADLINE_S)

            meters.cpu.watch(FRONT, api.pid)
            for worker in workers:
                meters.cpu.watch(WORKERS, worker.pid)
            meters.infra.watch(INFRA_REDIS, server_pid(flow_redis))
            meters.infra.watch(INFRA_REDIS, server_pid(broker_redis))
            meters.infra.watch(INFRA_SANDBOX, sandbox.pid)
            if self.database_pid is not None:
                meters.infra.watch(INFRA_DATABASE, self.database_pid)
            meters.watch_redis(FLOW, redis_url_of(flow_redis), options.monitor)
            meters.watch_redis(BROKER, redis_url_of(broker_redis), options.monitor)

            control = Celery("bench_pmsq_control", broker=redis_url_of(broker_redis))
            control.conf.update(broker_connection_retry_on_startup=True)
            stack.callback(control.close)
            engine = make_engine(self.database_url)
            stack.callback(engine.dispose)
            observer = observer_engine(self.database_url)
            stack.callback(observer.dispose)
            http = httpx.Client(
                timeout=30,
                limits=httpx.Limits(
                    max_connections=options.threads, max_keepalive_connections=options.threads
                ),
            )
            stack.callback(http.close)
            driver = _PmsqDriver(self, make_session_factory(engine), observer, http, options)
            profiled = {"api": api.pid} | {w.name: w.pid for w in workers}
            return driver.run(meters, control, profiled)


class _PmsqDriver:
    """Drives one running pmsq stack through the phases."""

    def __init__(
        self,
        run: PmsqRun,
        session_factory: sessionmaker[Session],
        observer: Engine,
        http: httpx.Client,
        options: RunOptions,
    ) -> None:
        self.pmsq = run
        self.observer = observer
        self.http = http
        self.options = options
        with session_factory.begin() as session:
            self.headers = {"Authorization": f"Bearer {create_token(session, 'bench')}"}
        self.integration_id = self._integration()

    def run(self, meters: Meters, control: Celery, profiled: Mapping[str, int]) -> SystemResult:
        options = self.options
        warmup = self._submit_all(
            "w", options.workers * WORKER_CONCURRENCY * WARMUP_PER_POOL_PROCESS
        )
        self._wait_final(warmup, "warm-up")
        phases: list[PhaseCost] = []
        if options.idle_s > 0:
            start = meters.start()
            time.sleep(options.idle_s)  # the idle window being measured, not a synchronisation
            phases.append(meters.finish(start, IDLE, 0))

        with profiling(options.profile_dir, profiled, options.profile_cpu_only) as profiles:
            started_at = datetime.now(UTC)
            start = meters.start()
            submit_started = time.monotonic()
            ids = self._submit_all("e", options.jobs)
            submit_s = time.monotonic() - submit_started
            self._wait_final(ids, f"{options.jobs} writes final")
            phases.append(meters.finish(start, END_TO_END, options.jobs))
        end_to_end = self._summary(ids, started_at, submit_s)

        drain = None
        if options.drain:
            control_consumers(control, "cancel_consumer", PMSQ_QUEUE, options.workers)
            start = meters.start()
            accept_started = time.monotonic()
            ids = self._submit_all("d", options.jobs)
            accept_s = time.monotonic() - accept_started
            phases.append(meters.finish(start, ACCEPT, options.jobs))
            start = meters.start()
            drain_started_at = datetime.now(UTC)
            control_consumers(control, "add_consumer", PMSQ_QUEUE, options.workers)
            self._wait_final(ids, f"{options.jobs} accepted writes drained")
            phases.append(meters.finish(start, DRAIN, options.jobs))
            drained = self._summary(ids, drain_started_at, accept_s)
            drain = Drain(options.jobs, accept_s, drained.total_s, drained.failed)
        return SystemResult("pmsq write path", end_to_end, drain, phases, profiles)

    def _submit(self, tag: str, i: int) -> str:
        body = {
            "integration_id": self.integration_id,
            "first_name": f"R{tag}{i}",
            "last_name": "Bench",
        }
        response = self.http.post(
            f"{self.pmsq.api_url}/v1/residents/", json=body, headers=self.headers
        )
        if response.status_code != 200:
            raise RuntimeError(f"write {tag}{i} refused: {response.status_code} {response.text}")
        return str(response.json()["job_id"])

    def _submit_all(self, tag: str, count: int) -> list[str]:
        with ThreadPoolExecutor(self.options.threads) as pool:
            return list(pool.map(lambda i: self._submit(tag, i), range(count)))

    def _wait_final(self, ids: Sequence[str], what: str) -> None:
        wait_for(lambda: self._final_count(ids) >= len(ids), FINISH_DEADLINE_S, what)

    def _integration(self) -> str:
        body = {
            "name": "bench",
            "integration_vendor": "SANDBOX",
            "active": True,
            "base_url": f"{self.pmsq.sandbox_url}/t/{TENANT}",
            "credentials": {"api_key": "bench-key-0123456789"},
            "max_job_concurrency": self.options.max_job_concurrency,
            "max_request_frequency": 100_000,
            "max_request_cadence": "SECOND",
        }
        response = self.http.post(
            f"{self.pmsq.api_url}/v1/admin/integrations/", json=body, headers=self.headers
        )
        if response.status_code != 200:
            raise RuntimeError(f"integration refused: {response.status_code} {response.text}")
        return str(response.json()["result"]["id"])

    def _final_count(self, ids: Sequence[str]) -> int:
        with Session(self.observer) as session:
            stmt = select(func.count()).where(Job.id.in_(ids), Job.status.in_(FINAL))
            return int(session.scalar(stmt) or 0)

    def _summary(self, ids: Sequence[str], started_at: datetime, submit_s: float) -> Throughput:
        with Session(self.observer) as session:
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
    """Bare Celery with pmsq's delivery settings (`bench.noop_app`), a no-op task; its broker
    on a redis-server of its own, the counter the benchmark polls on another."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    def measure(self, options: RunOptions) -> SystemResult:
        with ExitStack() as stack:
            broker_redis = stack.enter_context(RedisServer())
            counter_redis = stack.enter_context(RedisServer())
            broker_url, counter_url = redis_url_of(broker_redis), redis_url_of(counter_redis)
            env = {"BENCH_NOOP_BROKER_URL": broker_url, "BENCH_NOOP_COUNTER_URL": counter_url}
            workers = [
                celery_worker("bench.noop_app", noop_app.NOOP_QUEUE, f"noop{i}", env, self.log_dir)
                for i in range(options.workers)
            ]
            for worker in workers:
                stack.enter_context(running(worker))
            meters = Meters()
            stack.callback(meters.close)
            for worker in workers:
                worker.wait_until(lambda w=worker: "ready." in w.log_text(), START_DEADLINE_S)
                meters.cpu.watch(WORKERS, worker.pid)
            meters.infra.watch(INFRA_REDIS, server_pid(broker_redis))
            meters.infra.watch(INFRA_REDIS, server_pid(counter_redis))
            meters.watch_redis(BROKER, broker_url, options.monitor)
            client = Celery("bench_noop_client", broker=broker_url)
            client.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
            stack.callback(client.close)
            counter = redis.Redis.from_url(counter_url)
            stack.callback(counter.close)
            return self._drive(client, counter, meters, options)

    def _drive(
        self, client: Celery, counter: redis.Redis, meters: Meters, options: RunOptions
    ) -> SystemResult:
        def done() -> int:
            return int(counter.get(noop_app.COUNTER_KEY) or 0)

        def send(count: int) -> float:
            """Send `count` tasks from this thread; the CPU seconds the thread spent."""
            cpu_started = time.thread_time()
            for _ in range(count):
                client.send_task(noop_app.NOOP_TASK, queue=noop_app.NOOP_QUEUE)
            return time.thread_time() - cpu_started

        def reset() -> None:
            counter.delete(noop_app.COUNTER_KEY, noop_app.LAST_KEY)

        jobs = options.jobs
        warmup = options.workers * WORKER_CONCURRENCY * WARMUP_PER_POOL_PROCESS
        send(warmup)
        wait_for(lambda: done() >= warmup, START_DEADLINE_S, "no-op warm-up")
        reset()
        phases: list[PhaseCost] = []
        if options.idle_s > 0:
            start = meters.start()
            time.sleep(options.idle_s)  # the idle window being measured, not a synchronisation
            phases.append(meters.finish(start, IDLE, 0))

        start = meters.start()
        started_at = time.time()
        started = time.monotonic()
        sender_s = send(jobs)
        submit_s = time.monotonic() - started
        wait_for(lambda: done() >= jobs, FINISH_DEADLINE_S, f"{jobs} no-op tasks run")
        phases.append(meters.finish(start, END_TO_END, jobs, {FRONT: sender_s}))
        last = float(counter.get(noop_app.LAST_KEY) or 0)
        end_to_end = Throughput("bare Celery no-op", jobs, submit_s, last - started_at)

        drain = None
        if options.drain:
            reset()
            control_consumers(client, "cancel_consumer", noop_app.NOOP_QUEUE, options.workers)
            start = meters.start()
            started = time.monotonic()
            sender_s = send(jobs)
            accept_s = time.monotonic() - started
            phases.append(meters.finish(start, ACCEPT, jobs, {FRONT: sender_s}))
            start = meters.start()
            drain_started_at = time.time()
            control_consumers(client, "add_consumer", noop_app.NOOP_QUEUE, options.workers)
            wait_for(lambda: done() >= jobs, FINISH_DEADLINE_S, f"{jobs} sent no-op tasks run")
            phases.append(meters.finish(start, DRAIN, jobs))
            last = float(counter.get(noop_app.LAST_KEY) or 0)
            drain = Drain(jobs, accept_s, last - drain_started_at)
        return SystemResult("bare Celery no-op", end_to_end, drain, phases)


@contextmanager
def profiling(
    out_dir: Path | None, processes: Mapping[str, int], cpu_only: bool
) -> Iterator[list[Profile]]:
    """py-spy on `processes` (name -> pid, with their subprocesses) while the block runs; the
    yielded list is filled with one summary per process on leaving. Without `out_dir` nothing
    is profiled; without py-spy a message says so and the run goes on unprofiled."""
    profiles: list[Profile] = []
    binary = find_py_spy() if out_dir is not None else None
    if out_dir is None or binary is None:
        if out_dir is not None:
            print(
                "--profile: py-spy is not installed (.venv/bin/pip install py-spy); "
                "this run is not profiled",
                file=sys.stderr,
            )
        yield profiles
        return
    profiler = Profiler(binary, out_dir, cpu_only=cpu_only)
    for name, pid in processes.items():
        profiler.start(name, pid)
    try:
        yield profiles
    finally:
        for name, result in profiler.stop().items():
            if isinstance(result, Path):
                profiles.append(summarise(name, result, PROFILE_TOP))
            else:
                print(f"--profile: py-spy on {name} wrote nothing: {result}", file=sys.stderr)


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


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.3f}" if denominator else "-"


def report_throughput(pmsq: Throughput, noop: Throughput, workers: int) -> None:
    print(
        f"\nEnd to end, {pmsq.jobs} jobs, {workers} worker process(es) with "
        f"--concurrency {WORKER_CONCURRENCY}"
    )
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
    print(f"ratio pmsq / bare Celery: {ratio(pmsq.rate, noop.rate)}")


def report_drain(pmsq: SystemResult, noop: SystemResult) -> None:
    if pmsq.drain is None or noop.drain is None:
        return
    print(
        f"\nDrain: {pmsq.drain.jobs} jobs accepted while no worker consumed, then drained "
        "(from add_consumer to the last finish)"
    )
    rows = [
        [
            run.name,
            str(run.drain.jobs),
            f"{run.drain.accept_rate:.0f}",
            f"{run.drain.drain_s:.2f}",
            f"{run.drain.rate:.1f}",
            str(run.drain.failed),
        ]
        for run in (pmsq, noop)
        if run.drain is not None
    ]
    print(table(["run", "jobs", "accept/s", "drain s", "jobs/s", "not ok"], rows))
    print(
        f"ratio pmsq / bare Celery: drain {ratio(pmsq.drain.rate, noop.drain.rate)}, "
        f"accept {ratio(pmsq.drain.accept_rate, noop.drain.accept_rate)}"
    )


def report_cpu(pmsq: SystemResult, noop: SystemResult) -> None:
    print(
        "\nCPU (user+sys from /proc), ms per job (idle: ms per second); front = the API "
        "(pmsq) or the sending thread (bare Celery); infrastructure apart, not in total"
    )
    header = [
        "phase", "run", "front", "workers", "beat", "total",
        "| redis", "database", "sandbox", "wall s",
    ]  # fmt: skip
    rows = []
    for name in (IDLE, END_TO_END, ACCEPT, DRAIN):
        for run in (pmsq, noop):
            phase = run.phase(name)
            if phase is None:
                continue
            rows.append(
                [
                    name,
                    run.name,
                    *(
                        f"{phase.per_unit(phase.cpu_s.get(g, 0.0)) * 1000:.2f}"
                        for g in (FRONT, WORKERS, BEAT)
                    ),
                    f"{phase.per_unit(phase.cpu_total_s) * 1000:.2f}",
                    *(
                        f"{phase.per_unit(phase.infra_cpu_s.get(g, 0.0)) * 1000:.2f}"
                        for g in (INFRA_REDIS, INFRA_DATABASE, INFRA_SANDBOX)
                    ),
                    f"{phase.wall_s:.2f}",
                ]
            )
    print(table(header, rows))
    ratios = []
    for name in (END_TO_END, ACCEPT, DRAIN):
        ours, theirs = pmsq.phase(name), noop.phase(name)
        if ours is not None and theirs is not None:
            ratios.append(
                f"{name} {ratio(ours.cpu_total_s / ours.jobs, theirs.cpu_total_s / theirs.jobs)}"
            )
    print(
        f"ratio pmsq / bare Celery, CPU per job: {', '.join(ratios)} "
        f"(goal: end to end <= {CPU_RATIO_GOAL:g})"
    )


def report_redis(pmsq: SystemResult, noop: SystemResult, verbose: bool) -> None:
    print(
        "\nRedis per job (idle: per second): round trips (requests read by each redis-server) "
        "and commands executed (INFO commandstats, Lua's and MULTI's included)"
    )
    header = [
        "phase", "run", "broker rt", "flow rt", "total rt", "broker cmds", "flow cmds", "msgs",
    ]  # fmt: skip
    rows = []
    for name in (IDLE, END_TO_END, ACCEPT, DRAIN):
        for run in (pmsq, noop):
            phase = run.phase(name)
            if phase is None:
                continue
            broker, flow = phase.redis.get(BROKER), phase.redis.get(FLOW)
            rows.append(
                [
                    name,
                    run.name,
                    f"{phase.per_unit(broker.round_trips):.2f}" if broker else "-",
                    f"{phase.per_unit(flow.round_trips):.2f}" if flow else "-",
                    f"{phase.per_unit(phase.round_trips):.2f}",
                    f"{phase.per_unit(broker.commands):.2f}" if broker else "-",
                    f"{phase.per_unit(flow.commands):.2f}" if flow else "-",
                    f"{phase.per_unit(messages(broker)):.2f}" if broker else "-",
                ]
            )
    print(table(header, rows))
    print(
        "(msgs: broker messages published per job, kombu's LPUSH; above 1, jobs were sent to "
        "the workers more than once)"
    )
    idle = pmsq.phase(IDLE)
    for name in (END_TO_END, DRAIN):
        ours, theirs = pmsq.phase(name), noop.phase(name)
        if ours is None or theirs is None or FLOW not in ours.redis:
            continue
        flow = ours.per_unit(ours.redis[FLOW].round_trips)
        net = ""
        if idle is not None and FLOW in idle.redis:
            idle_per_s = idle.per_unit(idle.redis[FLOW].round_trips)
            net = f", {flow - idle_per_s * ours.wall_s / ours.jobs:.2f} net of the idle rate"
        print(
            f"pmsq flow-control round trips per job, {name}: {flow:.2f}{net} "
            f"(goal <= {ROUND_TRIPS_GOAL:g}); broker round trips per job pmsq / bare Celery: "
            f"{ratio(ours.redis[BROKER].round_trips, theirs.redis[BROKER].round_trips)}"
        )
    report_sent(pmsq, noop)
    if not verbose:
        return
    for name in (IDLE, END_TO_END, ACCEPT, DRAIN):
        for run in (pmsq, noop):
            phase = run.phase(name)
            if phase is None:
                continue
            for role, counts in phase.redis.items():
                unit = "s" if not phase.jobs else "job"
                calls = ", ".join(
                    f"{command} {phase.per_unit(count):.2f}"
                    for command, count in sorted(counts.calls.items(), key=lambda c: -c[1])
                )
                print(f"  {name}, {run.name}, {role}, calls per {unit}: {calls or 'none'}")


def report_sent(pmsq: SystemResult, noop: SystemResult) -> None:
    """With `--monitor`: what clients sent to each redis-server per job (idle: per second)."""
    for name in (IDLE, END_TO_END, ACCEPT, DRAIN):
        for run in (pmsq, noop):
            phase = run.phase(name)
            if phase is None:
                continue
            for role, sent in phase.sent.items():
                unit = "s" if not phase.jobs else "job"
                commands = ", ".join(
                    f"{command} {phase.per_unit(count):.2f}"
                    for command, count in sorted(sent.items(), key=lambda c: -c[1])
                )
                print(f"  {name}, {run.name}, {role}, sent per {unit}: {commands or 'none'}")


def messages(broker: RedisCounts) -> int:
    """Messages published to a Redis broker: kombu's Redis transport publishes with LPUSH."""
    return broker.calls.get("lpush", 0)


def report_profiles(profiles: Sequence[Profile]) -> None:
    for profile in profiles:
        print(f"\npy-spy, {profile.name}: {profile.samples} samples, top {PROFILE_TOP}")
        for label, entries in (("leaf", profile.leaf), ("inclusive", profile.inclusive)):
            rows = [
                [function, str(count), f"{100 * count / max(profile.samples, 1):.1f}"]
                for function, count in entries
            ]
            print(table([f"{label} function", "samples", "%"], rows))


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


def system_json(run: SystemResult) -> dict[str, Any]:
    """`run` with the per-job figures the tables show, for `--json`."""
    data = asdict(run)
    data["end_to_end"]["jobs_per_s"] = run.end_to_end.rate
    data["end_to_end"]["submit_per_s"] = run.end_to_end.submit_rate
    if run.drain is not None:
        data["drain"]["jobs_per_s"] = run.drain.rate
        data["drain"]["accept_per_s"] = run.drain.accept_rate
    for phase, phase_data in zip(run.phases, data["phases"], strict=True):
        unit = "per_job" if phase.jobs else "per_s"
        phase_data[f"cpu_ms_{unit}"] = {
            group: phase.per_unit(seconds) * 1000 for group, seconds in phase.cpu_s.items()
        } | {"total": phase.per_unit(phase.cpu_total_s) * 1000}
        phase_data[f"infra_cpu_ms_{unit}"] = {
            group: phase.per_unit(seconds) * 1000 for group, seconds in phase.infra_cpu_s.items()
        }
        phase_data[f"round_trips_{unit}"] = {
            role: phase.per_unit(counts.round_trips) for role, counts in phase.redis.items()
        } | {"total": phase.per_unit(phase.round_trips)}
    return data


def report_round(pmsq: SystemResult, noop: SystemResult, args: argparse.Namespace) -> None:
    """Every table of one round: throughput, drain, CPU, Redis, profiles."""
    report_throughput(pmsq.end_to_end, noop.end_to_end, args.workers)
    report_drain(pmsq, noop)
    report_cpu(pmsq, noop)
    report_redis(pmsq, noop, args.verbose)
    report_profiles(pmsq.profiles)
    if args.profile is not None and pmsq.profiles:
        print(
            "\n(profiled run: py-spy took CPU of its own, so this run's rates are "
            "lower than an unprofiled run's)"
        )


def report_rounds(rounds: Sequence[Round], summary: RoundsSummary) -> None:
    """One line per round, then what they say together (`RoundsSummary`)."""
    print(
        f"\n{len(rounds)} rounds (odd rounds ran pmsq first, even ones the peer first), "
        "end to end, pmsq / bare Celery"
    )
    rows = []
    for number, r in enumerate(rounds, start=1):
        ours, theirs = r.cpu_per_job_s(r.pmsq), r.cpu_per_job_s(r.noop)
        rows.append(
            [
                str(number),
                f"{r.pmsq.end_to_end.rate:.1f} / {r.noop.end_to_end.rate:.1f}",
                f"{r.throughput_ratio:.3f}",
                "-" if ours is None else f"{ours * 1000:.2f}",
                "-" if theirs is None else f"{theirs * 1000:.2f}",
                "-" if r.cpu_ratio is None else f"{r.cpu_ratio:.2f}",
                "-" if r.flow_round_trips is None else f"{r.flow_round_trips:.2f}",
            ]
        )
    header = ["round", "jobs/s", "ratio", "cpu ms/job", "peer ms", "cpu ratio", "flow rt"]
    print(table(header, rows))
    low, high = summary.throughput_ratio_range
    print(f"jobs/s ratio: median {summary.throughput_ratio_median:.3f} ({low:.3f}-{high:.3f})")
    if summary.cpu_ratio_median is not None and summary.cpu_ratio_range is not None:
        low, high = summary.cpu_ratio_range
        pooled = "-" if summary.cpu_ratio_pooled is None else f"{summary.cpu_ratio_pooled:.2f}"
        print(
            f"CPU per job ratio: median {summary.cpu_ratio_median:.2f} ({low:.2f}-{high:.2f}), "
            f"pooled {pooled}, {summary.rounds_within_cpu_goal} of {summary.rounds} rounds at "
            f"or under {CPU_RATIO_GOAL:g} (goal: <= {CPU_RATIO_GOAL:g})"
        )
    if summary.flow_round_trips_median is not None:
        print(
            f"flow-control round trips per job: median {summary.flow_round_trips_median:.2f} "
            f"(goal <= {ROUND_TRIPS_GOAL:g})"
        )


def ratios_json(pmsq: SystemResult, noop: SystemResult) -> dict[str, float]:
    figures = {"end_to_end_jobs_per_s": pmsq.end_to_end.rate / noop.end_to_end.rate}
    if pmsq.drain is not None and noop.drain is not None:
        figures["drain_jobs_per_s"] = pmsq.drain.rate / noop.drain.rate
        figures["accept_per_s"] = pmsq.drain.accept_rate / noop.drain.accept_rate
    for name in (END_TO_END, ACCEPT, DRAIN):
        ours, theirs = pmsq.phase(name), noop.phase(name)
        if ours is not None and theirs is not None and theirs.cpu_total_s:
            figures[f"{name.replace(' ', '_')}_cpu_per_job"] = ours.cpu_total_s / theirs.cpu_total_s
    return figures


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=500, help="writes (and no-op tasks) to run")
    parser.add_argument("--threads", type=int, default=4, help="threads submitting writes")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"worker processes (each --concurrency {WORKER_CONCURRENCY}), pmsq's and the peer's",
    )
    parser.add_argument(
        "--idle-s",
        type=float,
        default=3.0,
        help="seconds of the idle phase before the measured ones (0: none)",
    )
    parser.add_argument(
        "--max-job-concurrency",
        type=int,
        default=100,
        help="the pmsq integration's cap on jobs admitted at once (default 100: no throttling; "
        "admitted jobs that wait in the broker past PMSQ_JOB_LEASE_S are admitted again)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure pmsq and the peer this many times, alternating which goes first, and "
        "report the medians (the machine's speed moves from one run to the next)",
    )
    parser.add_argument("--skip-drain", action="store_true", help="no accept-then-drain phase")
    parser.add_argument(
        "--beat", action="store_true", help="run pmsq's beat too, its CPU counted as pmsq's"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy the API and the workers during the end-to-end phase; raw profiles in DIR "
        "(needs .venv/bin/pip install py-spy; slows the run down)",
    )
    parser.add_argument(
        "--profile-wall",
        action="store_true",
        help="with --profile: sample every active thread (waits on sockets included), not only "
        "those holding the GIL (CPU)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--verbose", action="store_true", help="Redis calls per command, per phase")
    parser.add_argument(
        "--monitor",
        action="store_true",
        help="also count the commands clients send to each redis-server (MONITOR; EVALSHA by "
        "script), without those Lua scripts run; costs CPU, so rates are lower",
    )
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
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.threads < 1 or args.repeat < 1:
        parser.error("--jobs, --workers, --threads and --repeat must be at least 1")
    if args.repeat > 1 and args.profile is not None:
        parser.error("--profile profiles one round: leave out --repeat")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    print(
        f"bench.pipeline on {platform.node()} ({os.cpu_count()} CPUs): "
        f"python {platform.python_version()}, database {args.database}, "
        f"{started:%Y-%m-%d %H:%M} UTC"
    )
    print(load_average("load average before"))
    output: dict[str, Any] = {
        "command": " ".join(
            ["python -m bench.pipeline", *(argv if argv is not None else sys.argv[1:])]
        ),
        "started_utc": started.isoformat(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "database": args.database,
        "workers": args.workers,
        "worker_concurrency": WORKER_CONCURRENCY,
        "threads": args.threads,
        "max_job_concurrency": args.max_job_concurrency,
        "load_average_before": os.getloadavg(),
    }
    with ExitStack() as resources, tempfile.TemporaryDirectory(prefix="pmsq-bench-") as tmp:
        workdir = Path(tmp)
        databases = Databases(args.database, workdir, resources)
        if not args.skip_e2e:
            log_dir = workdir / "logs"
            options = RunOptions(
                jobs=args.jobs,
                threads=args.threads,
                workers=args.workers,
                idle_s=args.idle_s,
                drain=not args.skip_drain,
                beat=args.beat,
                profile_dir=args.profile,
                profile_cpu_only=not args.profile_wall,
                max_job_concurrency=args.max_job_concurrency,
                monitor=args.monitor,
            )
            rounds: list[Round] = []
            for index in range(args.repeat):
                if args.repeat > 1:
                    print(f"\n== round {index + 1} of {args.repeat}")
                database_url = databases.new(f"e2e{index}" if index else "e2e")
                # Logs of a round of their own: a process is ready when its log says so.
                round_logs = log_dir if args.repeat == 1 else log_dir / f"round-{index + 1}"
                pmsq_run = PmsqRun(database_url, databases.server_pid, round_logs)
                peer_run = NoopRun(round_logs)
                if index % 2 == 0:  # pmsq first, then the peer; the other way in odd rounds
                    pmsq = pmsq_run.measure(options)
                    output["load_average_between"] = os.getloadavg()
                    noop = peer_run.measure(options)
                else:
                    noop = peer_run.measure(options)
                    pmsq = pmsq_run.measure(options)
                report_round(pmsq, noop, args)
                rounds.append(Round(pmsq, noop))
            if args.repeat == 1:
                output["pmsq"] = system_json(pmsq)
                output["bare_celery"] = system_json(noop)
                output["ratios_pmsq_over_bare_celery"] = ratios_json(pmsq, noop)
            else:
                summary = summarise_rounds(rounds)
                report_rounds(rounds, summary)
                output["rounds"] = [
                    {
                        "pmsq": system_json(r.pmsq),
                        "bare_celery": system_json(r.noop),
                        "ratios_pmsq_over_bare_celery": ratios_json(r.pmsq, r.noop),
                    }
                    for r in rounds
                ]
                output["summary"] = asdict(summary)
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
            output["aggregation"] = [asdict(run) | {"per_child_s": run.per_child_s} for run in runs]
    print(f"\n{load_average('load average after')}")
    output["load_average_after"] = os.getloadavg()
    if args.json is not None:
        args.json.write_text(json.dumps(output, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")
    return 0


def load_average(label: str) -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{label} (1/5/15 min): {one:.2f} {five:.2f} {fifteen:.2f}"


if __name__ == "__main__":
    sys.exit(main())

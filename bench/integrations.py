"""What the number of integrations costs a worker: idle CPU and admission per job, side by side.

`python -m bench.integrations [--sizes 10,1000,10000] [--database sqlite|postgresql]` prints
one table; nothing is asserted. For each size N, on a fresh database and a flushed database of
one throwaway redis-server:

- **Setup.** N integrations (100 per account) in the job store, each one's limits loaded into
  Redis and each one known to flow control (`pmsq:integrations`), as after every integration
  had work once. Half of them have a backlog: `BACKLOG` PENDING jobs each, in the job store and
  in their Redis backlog, due in an hour (retries waiting out their delay), so the ready set
  holds N/2 integrations and nothing is due.
- **(a) Idle worker CPU.** A real `celery -A pmsq.workers.app worker --concurrency 2` (its
  dispatcher and webhook threads included) runs with nothing to do. After `--warmup-s` from the
  moment it is ready, the user+system CPU of the worker's main process and its pool processes
  (from `/proc/<pid>/stat`) is read over `--window-s`, as is redis-server's. Reported as CPU
  milliseconds per second of wall time.
- **(b) Admission per job.** In this process, once the worker is stopped: `JOBS` PENDING jobs
  of `BUSY` other integrations (limits that do not throttle) are inserted and put in their
  backlogs (untimed), then `Dispatcher.tick()` (real `RedisFlowControl`, a stub publisher) runs
  until every job is QUEUED and published. Wall time and this process's CPU time, per job;
  median of `REPEATS` batches.

The last lines give each figure at every N over the smallest N (1 = flat). Everything started
here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, insert, select

from bench.costs import CpuMeter, difference
from bench.schedule import Databases, db_url, load_average
from pmsq.models.account import Account
from pmsq.models.base import new_id, utcnow
from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.settings import Settings
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.keys import KNOWN_INTEGRATIONS, IntegrationKeys
from pmsq.workers.flow.limits import Limits
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.publisher import AdmittedJob

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from support.processes import ManagedProcess  # noqa: E402
from support.services import RedisServer  # noqa: E402

DEFAULT_SIZES = (10, 1_000, 10_000)
#: Redis databases: flow control, and the worker's broker.
FLOW_DB, BROKER_DB = 1, 2
#: Integrations per account.
PER_ACCOUNT = 100
#: PENDING jobs of each integration with a backlog.
BACKLOG = 4
#: How far ahead the backlog jobs are due.
BACKLOG_DELAY = timedelta(hours=1)
#: Integrations whose jobs are admitted in (b), and jobs per batch, and batches.
BUSY = 10
JOBS = 200
REPEATS = 5
#: Rows per bulk INSERT statement.
INSERT_CHUNK = 5_000
#: Rate limit margin, as the settings' default.
RATE_MARGIN_MS = 20.0
#: CPU groups of the idle phase: the worker with its pool processes, and redis-server.
WORKER, REDIS = "worker", "redis-server"


# -- data -------------------------------------------------------------------------------------


def populate(engine: Engine, client: redis.Redis, n: int) -> list[str]:
    """N integrations, limits and known set in Redis, half with a backlog due later; BUSY more
    with limits that never throttle (returned) for the admission figure."""
    now = utcnow()
    total = n + BUSY
    account_ids = [new_id() for _ in range((total + PER_ACCOUNT - 1) // PER_ACCOUNT)]
    integrations: list[dict[str, Any]] = []
    for i in range(total):
        busy = i >= n
        integrations.append(
            {
                "id": new_id(),
                "account_id": account_ids[i // PER_ACCOUNT],
                "name": f"integration-{i}",
                "integration_vendor": "SANDBOX",
                "max_request_frequency": 100_000.0 if busy else 10.0,
                "max_request_cadence": "SECOND",
                "max_job_concurrency": 100_000 if busy else 4,
                "created_at": now,
                "updated_at": now,
            }
        )
    backlog_jobs: dict[str, list[str]] = {}
    jobs: list[dict[str, Any]] = []
    for row in integrations[: n // 2 * 2 : 2]:  # every other one of the N: half
        ids = [new_id() for _ in range(BACKLOG)]
        backlog_jobs[row["id"]] = ids
        jobs.extend(job_row(job_id, row, now + BACKLOG_DELAY) for job_id in ids)
    with engine.begin() as connection:
        accounts = [{"id": a, "name": f"bench-{a[:8]}", "created_at": now} for a in account_ids]
        for model, rows in ((Account, accounts), (Integration, integrations), (Job, jobs)):
            for offset in range(0, len(rows), INSERT_CHUNK):
                connection.execute(insert(model), rows[offset : offset + INSERT_CHUNK])
    flow = RedisFlowControl(client)
    with make_session_factory(engine)() as session, client.pipeline(transaction=False) as pipe:
        # What `set_limits` writes (the limits hash, as keys.py lays it out), pipelined.
        for integration in session.scalars(select(Integration)):
            limits = Limits.of(integration, RATE_MARGIN_MS)
            pipe.hset(IntegrationKeys(integration.id).limits, mapping=asdict(limits))
        pipe.sadd(KNOWN_INTEGRATIONS, *[row["id"] for row in integrations])
        pipe.execute()
    delay_s = BACKLOG_DELAY.total_seconds()
    for integration_id, ids in backlog_jobs.items():
        flow.enqueue(integration_id, ids, delay_s)
    return [row["id"] for row in integrations[n:]]


def job_row(job_id: str, integration: dict[str, Any], due_at: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "root_job_id": job_id,
        "account_id": integration["account_id"],
        "integration_id": integration["id"],
        "model": "residents",
        "action": "CREATE",
        "payload": {},
        "status": JobStatus.PENDING.value,
        "due_at": due_at,
        "idempotency_key": new_id(),
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }


# -- (a) idle worker --------------------------------------------------------------------------


def idle_worker_cpu(
    env: dict[str, str],
    log_dir: Path,
    redis_pid: int,
    warmup_s: float,
    window_s: float,
    report: Callable[[str], None],
) -> tuple[float, float]:
    """CPU ms per wall second of an idle worker (all its processes) and of redis-server."""
    worker = ManagedProcess(
        [
            sys.executable, "-m", "celery", "-A", "pmsq.workers.app", "worker", "-Q", "pmsq.jobs",
            "--concurrency", "2", "--loglevel", "info", "--hostname", "idle@%h",
            "--without-gossip", "--without-mingle",
        ],
        name="idle-worker", env=env, cwd=REPO_ROOT, log_dir=log_dir,
    )  # fmt: skip
    with worker:
        worker.wait_until(lambda: " ready." in worker.log_text(), 120, message="worker ready")
        time.sleep(warmup_s)
        meter = CpuMeter()
        meter.watch(WORKER, worker.pid)  # with its pool processes
        meter.watch(REDIS, redis_pid)
        began, before = time.monotonic(), meter.sample()
        time.sleep(window_s)
        used_s = difference(meter.sample(), before)
        elapsed_s = time.monotonic() - began
        if "Traceback" in worker.log_text():
            report("  WARNING: the worker logged a traceback:\n" + worker.log_tail())
    return used_s[WORKER] * 1000 / elapsed_s, used_s[REDIS] * 1000 / elapsed_s


# -- (b) admission ----------------------------------------------------------------------------


class CountingPublisher:
    def __init__(self) -> None:
        self.published = 0

    def publish(self, job: AdmittedJob) -> None:
        self.published += 1


def admission_per_job(
    engine: Engine, client: redis.Redis, busy: Sequence[str], database_url: str
) -> tuple[list[float], list[float]]:
    """Wall and CPU microseconds per admitted job, one figure per batch."""
    session_factory = make_session_factory(engine)
    flow = RedisFlowControl(client)
    publisher = CountingPublisher()
    settings = Settings(database_url=database_url, redis_url="redis://unused")
    dispatcher = Dispatcher(session_factory, publisher, flow, settings)
    with session_factory() as session:
        rows = {
            i.id: {"id": i.id, "account_id": i.account_id}
            for i in session.scalars(select(Integration).where(Integration.id.in_(busy)))
        }
    dispatcher.tick()  # warm-up: scripts, connections
    wall_us: list[float] = []
    cpu_us: list[float] = []
    for _ in range(REPEATS + 1):
        batches: dict[str, list[str]] = {i: [] for i in busy}
        jobs = []
        for k in range(JOBS):
            integration_id = busy[k % len(busy)]
            job_id = new_id()
            batches[integration_id].append(job_id)
            jobs.append(job_row(job_id, rows[integration_id], None))
        with engine.begin() as connection:
            connection.execute(insert(Job), jobs)
        flow.enqueue_many(batches)
        target = publisher.published + JOBS
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while publisher.published < target:
            dispatcher.tick()
        wall_us.append((time.perf_counter() - wall0) * 1e6 / JOBS)
        cpu_us.append((time.process_time() - cpu0) * 1e6 / JOBS)
    return wall_us[1:], cpu_us[1:]  # the first batch warms up the statements


# -- report -----------------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    worker_cpu_ms_s: float
    redis_cpu_ms_s: float
    admit_wall_us: list[float]
    admit_cpu_us: list[float]


def report_table(rows: Sequence[Row], database: str, window_s: float) -> None:
    print(
        f"\nIntegrations, {database}: idle CPU over {window_s:.0f} s (ms per s), admission per "
        f"job (us, median of {REPEATS} batches of {JOBS})\n"
    )
    print(
        "| N | idle worker CPU ms/s | idle redis-server CPU ms/s | admission wall us/job | "
        "admission CPU us/job |"
    )
    print("|" + "---:|" * 5)
    for row in rows:
        print(
            f"| {row.n:,} | {row.worker_cpu_ms_s:.2f} | {row.redis_cpu_ms_s:.2f} | "
            f"{statistics.median(row.admit_wall_us):.0f} | "
            f"{statistics.median(row.admit_cpu_us):.0f} |"
        )
    print("\nSpread of admission per job (min-max us, wall; cpu):")
    for row in rows:
        print(
            f"  N={row.n:,}: {min(row.admit_wall_us):.0f}-{max(row.admit_wall_us):.0f}; "
            f"{min(row.admit_cpu_us):.0f}-{max(row.admit_cpu_us):.0f}"
        )
    first = rows[0]
    print(f"\nFlatness, each N / N={first.n:,} (1 = flat):")
    for row in rows[1:]:
        print(
            f"  N={row.n:,}: idle worker CPU "
            f"{row.worker_cpu_ms_s / first.worker_cpu_ms_s:.2f}, idle redis CPU "
            f"{row.redis_cpu_ms_s / first.redis_cpu_ms_s:.2f}, admission wall "
            f"{statistics.median(row.admit_wall_us) / statistics.median(first.admit_wall_us):.2f}"
            ", admission CPU "
            f"{statistics.median(row.admit_cpu_us) / statistics.median(first.admit_cpu_us):.2f}"
        )


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.integrations", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(DEFAULT_SIZES),
        help="comma-separated integration counts (default 10,1000,10000)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--window-s", type=float, default=30.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"bench.integrations on {platform.node()} ({os.cpu_count()} CPUs): "
        f"python {platform.python_version()}, database {args.database}, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"
    )
    print(load_average("load average before"))

    def report(line: str) -> None:
        print(line, flush=True)

    rows = []
    with ExitStack() as resources, tempfile.TemporaryDirectory(prefix="pmsq-bench-") as tmp:
        workdir = Path(tmp)
        redis_server = resources.enter_context(RedisServer())
        assert redis_server.process is not None
        databases = Databases(args.database, workdir, resources)
        for n in args.sizes:
            report(f"N = {n:,}")
            database_url = databases.new(f"bench_integrations_{n}")
            flow_url, broker_url = db_url(redis_server, FLOW_DB), db_url(redis_server, BROKER_DB)
            client = redis.Redis.from_url(flow_url)
            client.flushdb()
            redis.Redis.from_url(broker_url).flushdb()
            engine = make_engine(database_url)
            began = time.perf_counter()
            busy = populate(engine, client, n)
            report(f"  {n:,} integrations set up in {time.perf_counter() - began:.1f} s")
            env = {
                "PMSQ_DATABASE_URL": database_url,
                "PMSQ_REDIS_URL": flow_url,
                "PMSQ_BROKER_URL": broker_url,
                "PMSQ_AUTO_MIGRATE": "false",
            }
            log_dir = workdir / f"logs-{n}"
            log_dir.mkdir()
            worker_cpu, redis_cpu = idle_worker_cpu(
                env, log_dir, redis_server.process.pid, args.warmup_s, args.window_s, report
            )
            report(f"  idle: worker {worker_cpu:.2f} ms/s, redis-server {redis_cpu:.2f} ms/s")
            wall, cpu = admission_per_job(engine, client, busy, database_url)
            report(f"  admission: {statistics.median(wall):.0f} us/job wall")
            rows.append(Row(n, worker_cpu, redis_cpu, wall, cpu))
            engine.dispose()
            client.close()
    report_table(rows, args.database, args.window_s)
    print(f"\n{load_average('load average after')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale-out: jobs/s as worker processes are added on one host and spread over several hosts.

`python -m bench.scaleout [--jobs 200] [--layouts 1x1,1x2,1x4,2x1,2x2,3x2]` prints one table;
nothing is asserted. A layout `HxP` is H hosts with one `celery worker --concurrency P` each
(H x P worker processes). One host is the root namespace; two or more are network namespaces
on a bridge (`tests/support/netns.py`, which needs root and `ip netns`; without them those
layouts are skipped, saying why). Every layout shares one redis-server and one PostgreSQL,
both listening on the bridge, and one sandbox PMS and API, started once.

Per layout, `--jobs` resident CREATEs are spread round-robin over `INTEGRATIONS` SANDBOX
integrations (each `RATE_PER_S` requests per second and `CAP` concurrent jobs: together more
than two cores deliver, so the workers are what is measured, while flow control runs as usual)
and submitted over HTTP from `--threads` threads; jobs/s runs from the first submit to the last
job's `finished_at`. Then the same workers serve a backlog of `LIMITED_JOBS` writes on one
integration whose limits bind (`LIMITED_RATE_PER_S`, `LIMITED_CAP`, each answer
`LIMITED_LATENCY_MS` late), and the sandbox's request log gives the most requests in any 1 s
window over the limit and the most in flight at once over the cap: at most 1 when the limits
hold across the layout's processes and hosts, near 1 when they are also used in full. The
peer, in the same layout and the same run: bare Celery (`bench.noop_app`, pmsq's delivery
settings, a task that only INCRs a counter), the same number of tasks sent from one thread.

Everything started here (servers, processes, namespaces) is stopped on the way out, also on
errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis
from celery import Celery
from sqlalchemy import func, select

from bench import noop_app
from pmsq.models.enums import TERMINAL_STATUSES, JobStatus
from pmsq.models.job import Job
from pmsq.models.migrate import upgrade

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from support.judge import max_in_flight, max_in_window  # noqa: E402
from support.netns import Hosts, HostsStack, why_impossible  # noqa: E402
from support.processes import ManagedProcess, stop_all, wait_until  # noqa: E402
from support.services import PostgresServer, RedisServer  # noqa: E402

#: Redis databases: pmsq's broker and flow control, the no-op peer's broker and counter.
PMSQ_REDIS_DB = 1
NOOP_REDIS_DB = 2
#: Integrations the jobs are spread over, and each one's limits.
INTEGRATIONS = 4
RATE_PER_S = 25
CAP = 2
#: The integration whose limits bind, measured after the throughput: its backlog and the
#: sandbox's answer time (longer than the rate's spacing, so the cap binds too).
LIMITED_RATE_PER_S = 5
LIMITED_CAP = 2
LIMITED_JOBS = 30
LIMITED_LATENCY_MS = 300
#: Seconds a layout's workers get to start, and its jobs to finish.
START_DEADLINE_S = 90.0
FINISH_DEADLINE_S = 600.0
FINAL = frozenset(s.value for s in TERMINAL_STATUSES)
DEFAULT_LAYOUTS = "1x1,1x2,1x4,2x1,2x2,3x2"
#: pmsq's own defaults where the test stack tunes them for speed of failure.
DEPLOYED_ENV = {
    "PMSQ_JOB_LEASE_S": "10",
    "PMSQ_DISPATCH_INTERVAL_S": "0.2",
    "PMSQ_PMS_TIMEOUT_S": "10",
    "PMSQ_RETRY_BASE_S": "1",
    "PMSQ_RETRY_MAX_S": "60",
}
_runs = itertools.count(1)


@dataclass(frozen=True)
class Layout:
    hosts: int
    per_host: int

    @classmethod
    def parse(cls, text: str) -> Layout:
        hosts, _, per_host = text.partition("x")
        return cls(int(hosts), int(per_host))

    @property
    def processes(self) -> int:
        return self.hosts * self.per_host

    @property
    def placement(self) -> list[int | None]:
        """Where each worker runs: the root namespace for one host, else namespace i."""
        return [None] if self.hosts == 1 else list(range(self.hosts))

    def __str__(self) -> str:
        return f"{self.hosts}x{self.per_host}"


@dataclass(frozen=True)
class Row:
    layout: Layout
    pmsq_rate: float
    noop_rate: float
    failed: int
    window_over_limit: float
    in_flight_over_cap: float


def measure_pmsq(stack: HostsStack, layout: Layout, jobs: int, threads: int) -> Row:
    """One layout's workers: its throughput, then its limits; the workers stop afterwards."""
    run = next(_runs)
    stack.start_workers(layout.placement, concurrency=layout.per_host)
    try:
        headers = stack.token(f"bench{run}")
        integrations = [
            stack.integration(
                headers,
                "SANDBOX",
                f"so{run}i{i}",
                max_request_frequency=RATE_PER_S,
                max_job_concurrency=CAP,
            )
            for i in range(INTEGRATIONS)
        ]
        with httpx.Client(
            timeout=30,
            limits=httpx.Limits(max_connections=threads, max_keepalive_connections=threads),
        ) as http:
            submit = Submitter(stack, http, headers)
            # One write per integration first: imports, pools and limits warm before the clock.
            submit.all(integrations, INTEGRATIONS, threads)
            started_at = datetime.now(UTC)
            ids = submit.all(integrations, jobs, threads)
            with stack.session_factory() as session:
                rows = session.execute(select(Job.status, Job.finished_at).where(Job.id.in_(ids)))
                statuses, finished = zip(*rows.all(), strict=True)
            window, in_flight = binding_limits(stack, submit, f"so{run}limited", threads)
        return Row(
            layout=layout,
            pmsq_rate=jobs / (max(finished) - started_at).total_seconds(),
            noop_rate=0.0,
            failed=sum(1 for s in statuses if s != JobStatus.SUCCESS.value),
            window_over_limit=window,
            in_flight_over_cap=in_flight,
        )
    finally:
        stack.stop_workers()


class Submitter:
    """Writes over HTTP, as clients send them, waiting until they are final."""

    def __init__(self, stack: HostsStack, http: httpx.Client, headers: dict[str, str]) -> None:
        self._stack = stack
        self._http = http
        self.headers = headers
        self._numbers = itertools.count()

    def one(self, integration_id: str) -> str:
        body = {"integration_id": integration_id, "last_name": f"S{next(self._numbers)}"}
        response = self._http.post(
            f"{self._stack.api_url}/v1/residents/", json=body, headers=self.headers
        )
        if response.status_code != 200:
            raise RuntimeError(f"write refused: {response.status_code} {response.text}")
        return str(response.json()["job_id"])

    def all(self, integrations: Sequence[str], n: int, threads: int) -> list[str]:
        """`n` writes round-robin over `integrations` from `threads` threads; returns once
        every one is final."""
        with ThreadPoolExecutor(threads) as pool:
            ids = list(pool.map(lambda i: self.one(integrations[i % len(integrations)]), range(n)))
        wait_until(lambda: final_count(self._stack, ids) == n, FINISH_DEADLINE_S, 0.2)
        return ids


def binding_limits(
    stack: HostsStack, submit: Submitter, tenant: str, threads: int
) -> tuple[float, float]:
    """A backlog on one integration whose limits bind (`LIMITED_*`, each request answered
    after `LIMITED_LATENCY_MS`), served by every worker of the layout: the most requests in
    any 1 s window over the limit, and the most in flight over the cap."""
    integration_id = stack.integration(
        submit.headers,
        "SANDBOX",
        tenant,
        max_request_frequency=LIMITED_RATE_PER_S,
        max_job_concurrency=LIMITED_CAP,
    )
    stack.fault(tenant=tenant, kind="latency", latency_ms=LIMITED_LATENCY_MS)
    submit.all([integration_id], LIMITED_JOBS, threads)
    requests = stack.sandbox_requests(tenant)
    window = max_in_window([r["started_at"] for r in requests], 1.0)
    return window / LIMITED_RATE_PER_S, max_in_flight(requests) / LIMITED_CAP


def final_count(stack: HostsStack, ids: Sequence[str]) -> int:
    with stack.session_factory() as session:
        stmt = select(func.count()).where(Job.id.in_(ids), Job.status.in_(FINAL))
        return int(session.scalar(stmt) or 0)


def measure_noop(hosts: Hosts | None, url: str, layout: Layout, jobs: int, log_dir: Path) -> float:
    """Bare Celery in the same layout: `jobs` no-op tasks from one thread; tasks per second
    from the first send to the last increment."""
    env = {"BENCH_NOOP_BROKER_URL": url, "BENCH_NOOP_COUNTER_URL": url}
    workers = []
    for n, host in enumerate(layout.placement):
        args = [
            sys.executable, "-m", "celery", "-A", "bench.noop_app", "worker",
            "-Q", noop_app.NOOP_QUEUE, "--concurrency", str(layout.per_host),
            "--loglevel", "info", "--hostname", f"noop{n}@%h",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        command = args if host is None or hosts is None else hosts.command(host, args)
        workers.append(
            ManagedProcess(
                command, name=f"noop{n}", env=env, cwd=REPO_ROOT, log_dir=log_dir
            ).start()
        )
    client = Celery("bench_noop_client", broker=url)
    client.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
    counter = redis.Redis.from_url(url)
    try:
        for worker in workers:
            worker.wait_until(lambda w=worker: "ready." in w.log_text(), START_DEADLINE_S)

        def done() -> int:
            return int(counter.get(noop_app.COUNTER_KEY) or 0)

        counter.delete(noop_app.COUNTER_KEY, noop_app.LAST_KEY)
        for _ in workers:
            client.send_task(noop_app.NOOP_TASK, queue=noop_app.NOOP_QUEUE)
        wait_until(lambda: done() >= len(workers), START_DEADLINE_S, 0.2)
        counter.delete(noop_app.COUNTER_KEY, noop_app.LAST_KEY)
        started_at = time.time()
        for _ in range(jobs):
            client.send_task(noop_app.NOOP_TASK, queue=noop_app.NOOP_QUEUE)
        wait_until(lambda: done() >= jobs, FINISH_DEADLINE_S, 0.2)
        return jobs / (float(counter.get(noop_app.LAST_KEY) or 0) - started_at)
    finally:
        counter.close()
        client.close()
        stop_all(workers, timeout_s=10)


def table(rows: Sequence[Row]) -> str:
    header = [
        "layout", "processes", "pmsq jobs/s", "bare Celery/s", "ratio", "failed",
        "window/limit", "in-flight/cap",
    ]  # fmt: skip
    lines = [
        [
            str(r.layout),
            str(r.layout.processes),
            f"{r.pmsq_rate:.1f}",
            f"{r.noop_rate:.1f}",
            f"{r.pmsq_rate / r.noop_rate:.3f}",
            str(r.failed),
            f"{r.window_over_limit:.2f}",
            f"{r.in_flight_over_cap:.2f}",
        ]
        for r in rows
    ]
    widths = [max(len(c) for c in column) for column in zip(header, *lines, strict=True)]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in [header, *lines]
    )


def run(layouts: Sequence[Layout], jobs: int, threads: int) -> list[Row]:
    wanted_hosts = max(layout.hosts for layout in layouts)
    refused = why_impossible() if wanted_hosts > 1 else None
    if refused is not None:
        print(f"layouts on more than one host skipped: {refused}")
        layouts = [layout for layout in layouts if layout.hosts == 1]
        wanted_hosts = 1
    rows: list[Row] = []
    with ExitStack() as resources:
        # The servers listen on the bridge in every layout, one host's included.
        hosts = resources.enter_context(Hosts(max(wanted_hosts, 1))) if refused is None else None
        also_on = [hosts.server_interface] if hosts is not None else []
        redis_server = resources.enter_context(RedisServer(also_on=also_on))
        postgres = resources.enter_context(PostgresServer(also_on=also_on))
        reach = hosts.bridged if hosts is not None else (lambda url: url)
        database_url = reach(postgres.create_database("pmsq_scaleout"))
        upgrade(database_url)
        base = reach(redis_server.url).rsplit("/", 1)[0]
        stack = HostsStack(hosts, database_url, f"{base}/{PMSQ_REDIS_DB}", DEPLOYED_ENV)
        resources.callback(stack.stop)
        stack.start()
        for layout in layouts:
            row = measure_pmsq(stack, layout, jobs, threads)
            noop = measure_noop(hosts, f"{base}/{NOOP_REDIS_DB}", layout, jobs, stack.log_dir)
            rows.append(Row(**{**row.__dict__, "noop_rate": noop}))
            print(f"  {layout}: pmsq {row.pmsq_rate:.1f} jobs/s, bare Celery {noop:.1f}/s")
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--jobs", type=int, default=200, help="writes per layout")
    parser.add_argument("--threads", type=int, default=4, help="threads submitting writes")
    parser.add_argument(
        "--layouts", default=DEFAULT_LAYOUTS, help="HOSTSxPROCESSES_PER_HOST, comma-separated"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    layouts = [Layout.parse(text) for text in args.layouts.split(",")]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = run(layouts, args.jobs, args.threads)
    print(
        f"\n{args.jobs} writes per layout over {INTEGRATIONS} integrations "
        f"({RATE_PER_S}/s, cap {CAP} each), PostgreSQL, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(table(rows))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

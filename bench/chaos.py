"""Exactly once under faults: writes through the whole system while everything fails.

`python -m bench.chaos [--writes 1000] [--database postgresql|sqlite] [--seed 7]` starts its own
redis-server (and PostgreSQL), the sandbox PMS, the API and three Celery workers of two pool
processes, then submits writes of three kinds, one integration each:

- residents on SANDBOX, a vendor that honours Idempotency-Key;
- residents on APPFOLIO, a vendor without idempotency keys (re-attempts must find out whether
  the lost attempt applied);
- applicants with two contacts on RENT_MANAGER, a workflow of child jobs (validate, create,
  then one job per contact).

Writes go in five waves, each once the chaos has made one more kill. Meanwhile the PMS loses
answers (it applies a create and then answers 502, or drops the
connection), drops connections before applying, answers 503, and sometimes answers later than
the client's timeout; a worker or a pool process is SIGKILLed every 1.5-3 s; Redis is killed and
comes back empty once, PostgreSQL is restarted once. Submissions that fail while a server is
down are retried with the same Idempotency-Key, as a client would.

It then judges by what the PMS holds (the sandbox's records and request log) and prints: writes,
lost (a write without its record, or a workflow without its children), doubled at the PMS (a
write's record created twice), merged (a write reporting a record that is not its own), not
final, failed, the most requests in any one-second window against the limit, the most requests
in flight against the cap, and the longest time from a kill to the end of a job it interrupted
(one running at the kill that had to be delivered again). The goal is 0 lost, doubled, merged
and not final, within the limits.
`run(Plan(...))` returns the same figures as a `Report`, for the test that runs a short round.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from pmsq.models.job import Job, JobLog
from pmsq.models.migrate import upgrade

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from support.processes import pool_children, wait_until  # noqa: E402
from support.services import PostgresServer, RedisServer  # noqa: E402
from support.stack import FINAL, Stack  # noqa: E402

#: The three kinds of write: (vendor, model, contacts per write).
KINDS = (
    ("SANDBOX", "residents", 0),
    ("APPFOLIO", "residents", 0),
    ("RENT_MANAGER", "applicants", 2),
)
#: The stack's PMSQ_PMS_TIMEOUT_S, and an answer later than that (also the longest a request
#: stays at the PMS).
PMS_TIMEOUT_S = 2.0
LATE_ANSWER_MS = 2500
#: The PMS's faults, each on a share of the creates it receives (seeded).
FAULTS: tuple[dict[str, Any], ...] = (
    {"kind": "apply_then_status", "status": 502, "probability": 0.10},
    {"kind": "apply_then_reset", "probability": 0.05},
    {"kind": "reset", "probability": 0.03},
    {"kind": "status", "status": 503, "probability": 0.05},
    {"kind": "latency", "latency_ms": LATE_ANSWER_MS, "probability": 0.02},
)
#: Requests per second each integration allows, and jobs it runs at once.
RATE_PER_S = 10
CAP = 2
#: Seconds every write gets to end once the chaos stops.
FINISH_DEADLINE_S = 300.0
#: Seconds a client keeps retrying one submission while servers are down.
SUBMIT_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Plan:
    writes: int = 100
    database: str = "postgresql"
    seed: int = 7
    workers: int = 3
    #: Seconds between kills: drawn between these two.
    kill_every_s: tuple[float, float] = (1.5, 3.0)
    #: Kills after which Redis, then PostgreSQL, are restarted.
    redis_restart_after: int = 2
    postgres_restart_after: int = 4
    #: The writes are submitted in this many waves, each once the kill before it happened, so
    #: writes are in flight at every fault however fast the write path or slow a worker's
    #: start (a replacement worker's start paces the kills on a loaded machine).
    waves: int = 5


@dataclass
class Write:
    index: int
    vendor: str
    model: str
    marker: str
    contacts: int
    job_id: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    writes: int = 0
    lost: int = 0
    doubled: int = 0
    merged: int = 0
    not_final: int = 0
    failed: int = 0
    kills: int = 0
    restarts: list[str] = field(default_factory=list)
    #: Per vendor: (most requests in any one-second window, the limit).
    max_in_window: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Per vendor: (most requests in flight at once, the cap).
    max_in_flight: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Per vendor: the most requests in flight at once around Redis's loss of its data (from
    #: the kill to the longest PMS request after it answers again), when the leases of running jobs
    #: are gone: those jobs are fenced out at their next request, but one request each may
    #: still be at the PMS while new jobs are admitted. Not counted in `max_in_flight`.
    in_flight_at_redis_loss: dict[str, int] = field(default_factory=dict)
    longest_recovery_s: float = 0.0
    duration_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def within_limits(self) -> bool:
        return all(seen <= limit for seen, limit in self.max_in_window.values()) and all(
            seen <= cap for seen, cap in self.max_in_flight.values()
        )

    def lines(self) -> list[str]:
        window = ", ".join(f"{v} {s}/{lim}" for v, (s, lim) in self.max_in_window.items())
        flight = ", ".join(f"{v} {s}/{cap}" for v, (s, cap) in self.max_in_flight.items())
        at_loss = ", ".join(f"{v} {n}" for v, n in self.in_flight_at_redis_loss.items())
        return [
            f"writes {self.writes}, lost {self.lost}, doubled {self.doubled}, "
            f"merged {self.merged}, not final {self.not_final}, failed {self.failed}",
            f"max requests in a 1 s window / limit: {window}",
            f"max in flight / cap: {flight} (around Redis's data loss: {at_loss or '-'})",
            f"kills {self.kills}, restarts {', '.join(self.restarts) or 'none'}, "
            f"longest kill-to-finish {self.longest_recovery_s:.1f} s, run {self.duration_s:.0f} s",
            *self.problems[:20],
        ]


def run(plan: Plan) -> Report:
    """Run one round of `plan` on servers of its own; everything is stopped on the way out."""
    rng = random.Random(plan.seed)
    with ExitStack() as stack_exit:
        redis_server = stack_exit.enter_context(RedisServer())
        postgres = None
        if plan.database == "postgresql":
            postgres = stack_exit.enter_context(PostgresServer())
            database_url = postgres.create_database("chaos")
        else:
            database_url = f"sqlite:///{tempfile.mkdtemp(prefix='pmsq-chaos-')}/pmsq.db"
        upgrade(database_url)
        stack = Stack(
            database_url,
            redis_server.url,
            env={"PMSQ_MAX_ATTEMPTS": "20", "PMSQ_MAX_DELIVERIES": "20"},
        )
        stack_exit.callback(stack.stop)
        stack.start()
        for _ in range(plan.workers - 1):
            stack.start_worker()
        round_ = Round(plan, stack, rng)
        with round_.chaos(redis_server, postgres):
            round_.submit_all()
            round_.wait_all_final(stop_chaos_when_done=True)
        round_.wait_all_final(stop_chaos_when_done=False)
        return round_.judge()


class Round:
    def __init__(self, plan: Plan, stack: Stack, rng: random.Random) -> None:
        self.plan = plan
        self.stack = stack
        self.rng = rng
        self.headers = stack.token(f"chaos-{uuid.uuid4().hex[:6]}")
        self.run_id = uuid.uuid4().hex[:6]
        self.tenants: dict[str, str] = {}
        self.integrations: dict[str, str] = {}
        for n, (vendor, _model, _contacts) in enumerate(KINDS):
            tenant = f"chaos{self.run_id}{n}"
            self.tenants[vendor] = tenant
            self.integrations[vendor] = stack.integration(
                self.headers, vendor, tenant,
                max_request_frequency=RATE_PER_S, max_job_concurrency=CAP,
            )  # fmt: skip
            for n_fault, fault in enumerate(FAULTS):
                stack.fault(tenant=tenant, method="POST", seed=plan.seed * 100 + n_fault, **fault)
        self.writes = []
        for i in range(plan.writes):
            vendor, model, contacts = KINDS[i % len(KINDS)]
            self.writes.append(Write(i, vendor, model, f"w{self.run_id}x{i}", contacts))
        #: Per kill: when, and the RUNNING jobs then with the attempt each was on.
        self.kills: list[tuple[float, dict[str, int]]] = []
        self.restarts: list[str] = []
        #: When Redis was killed and when it answered again (time.time()).
        self.redis_loss: tuple[float, float] | None = None
        self.started = time.monotonic()
        self.wall_start = time.time()
        #: (seconds since the start, what) of each restart, for the report.
        self.events: list[tuple[float, str]] = []
        self._done = threading.Event()

    # -- load ------------------------------------------------------------------------------

    def body(self, write: Write) -> dict[str, Any]:
        body: dict[str, Any] = {
            "integration_id": self.integrations[write.vendor],
            "first_name": "Chaos",
            "last_name": write.marker,
            "email_1": f"{write.marker}@example.test",
        }
        if write.contacts:
            body["contacts"] = [
                {"email_1": f"{write.marker}c{k}@example.test", "kind": "email"}
                for k in range(write.contacts)
            ]
        return body

    def submit(self, write: Write) -> None:
        """POST the write, retrying with one Idempotency-Key until the API accepts it."""
        key = f"chaos-{write.marker}"
        deadline = time.monotonic() + SUBMIT_DEADLINE_S
        while True:
            try:
                response = self.stack.http.post(
                    f"{self.stack.api_url}/v1/{write.model}/",
                    json=self.body(write),
                    headers={**self.headers, "Idempotency-Key": key},
                )
                if response.status_code < 300:
                    write.job_id = str(response.json()["job_id"])
                    return
                if response.status_code < 500 and response.status_code != 409:
                    raise RuntimeError(f"write {write.index} refused: {response.text}")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"write {write.index} was never accepted")
            time.sleep(0.2)  # a client's retry pause

    def submit_all(self) -> None:
        """Submit the writes wave by wave: wave k+1 once the chaos made its k+1-th kill."""
        size = -(-len(self.writes) // self.plan.waves)
        with ThreadPoolExecutor(4) as pool:
            for wave, start in enumerate(range(0, len(self.writes), size)):
                if wave:
                    wait_until(
                        partial(self._killed, wave),
                        SUBMIT_DEADLINE_S,
                        0.1,
                        message=f"kill {wave} before wave {wave + 1}",
                    )
                list(pool.map(self.submit, self.writes[start : start + size]))

    def _killed(self, count: int) -> bool:
        return len(self.kills) >= count

    def status(self, write: Write) -> dict[str, Any]:
        try:
            response = self.stack.status(self.headers, write.job_id or "")
        except httpx.TransportError:
            return {}
        return dict(response.json()) if response.status_code == 200 else {}

    def wait_all_final(self, *, stop_chaos_when_done: bool) -> None:
        def all_final() -> bool:
            for write in self.writes:
                if write.outcome.get("write_status") not in FINAL:
                    write.outcome = self.status(write)
            return all(w.outcome.get("write_status") in FINAL for w in self.writes)

        try:
            wait_until(all_final, FINISH_DEADLINE_S, 0.5, message="every write final")
        except TimeoutError:
            if stop_chaos_when_done:
                return
        if stop_chaos_when_done:
            self._done.set()

    # -- faults ----------------------------------------------------------------------------

    @contextmanager
    def chaos(self, redis_server: RedisServer, postgres: PostgresServer | None) -> Iterator[None]:
        thread = threading.Thread(
            target=self._chaos_loop, args=(redis_server, postgres), name="chaos", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            self._done.set()
            thread.join()

    def _chaos_loop(self, redis_server: RedisServer, postgres: PostgresServer | None) -> None:
        low, high = self.plan.kill_every_s
        while not self._done.wait(self.rng.uniform(low, high)):
            self._kill_one()
            if len(self.kills) == self.plan.redis_restart_after:
                killed = time.time()
                redis_server.restart(signal.SIGKILL)
                self.redis_loss = (killed, time.time())
                self.events.append((round(killed - self.wall_start, 1), "redis killed"))
                self.restarts.append("redis (SIGKILL, data lost)")
            if postgres is not None and len(self.kills) == self.plan.postgres_restart_after:
                self.events.append((round(time.time() - self.wall_start, 1), "postgres restart"))
                postgres.restart()
                self.restarts.append("postgresql")

    def _kill_one(self) -> None:
        running = self._running_job_ids()
        worker = self.rng.choice([w for w in self.stack.workers if w.is_running()])
        children = pool_children(worker.pid)
        when = time.time()
        if children and self.rng.random() < 0.5:
            os.kill(self.rng.choice(children), signal.SIGKILL)
        else:
            worker.kill()
            self.stack.workers.remove(worker)
            self.stack.start_worker()
        self.kills.append((when, running))

    def _running_job_ids(self) -> dict[str, int]:
        """The RUNNING jobs and the attempt each is on."""
        try:
            with self.stack.session_factory() as session:
                rows = session.execute(
                    select(Job.id, Job.attempts).where(Job.status == "RUNNING")
                ).all()
                return {job_id: attempt for job_id, attempt in rows}
        except Exception:  # the database is restarting: this kill's jobs go unmeasured
            return {}

    # -- the judge -------------------------------------------------------------------------

    def judge(self) -> Report:
        report = Report(writes=len(self.writes), kills=len(self.kills), restarts=self.restarts)
        report.duration_s = time.monotonic() - self.started
        records = {
            vendor: self.stack.sandbox_records(self.tenants[vendor], model)
            for vendor, model, _ in KINDS
        }
        contacts = self.stack.sandbox_records(self.tenants["RENT_MANAGER"], "contacts")
        by_marker = Counter(r.get("last_name") for rs in records.values() for r in rs)
        contact_emails = Counter(r.get("email_1") for r in contacts)
        # Record ids are per tenant, so each vendor's ids map to markers of its own.
        markers = {
            vendor: {str(r["id"]): r.get("last_name") for r in rs} for vendor, rs in records.items()
        }
        for write in self.writes:
            status = write.outcome.get("write_status")
            if status not in FINAL:
                report.not_final += 1
                report.problems.append(f"write {write.index} not final: {write.outcome}")
                continue
            if status != "SUCCESS":
                report.failed += 1
                report.problems.append(f"write {write.index} {status}: {write.outcome}")
            count = by_marker[write.marker]
            emails = [f"{write.marker}c{k}@example.test" for k in range(write.contacts)]
            if count > 1 or any(contact_emails[e] > 1 for e in emails):
                report.doubled += 1
                report.problems.append(f"write {write.index} doubled at the PMS ({count})")
            if status == "SUCCESS" and (count == 0 or any(contact_emails[e] == 0 for e in emails)):
                report.lost += 1
                report.problems.append(f"write {write.index} succeeded without its records")
            created = write.outcome.get("created_record_id")
            if status == "SUCCESS" and markers[write.vendor].get(str(created)) != write.marker:
                report.merged += 1
                report.problems.append(f"write {write.index} reports record {created}")
        for vendor, tenant in self.tenants.items():
            requests = self.stack.sandbox_requests(tenant)
            report.max_in_window[vendor] = (_max_in_window(requests, 1.0), RATE_PER_S)
            if self.redis_loss is None:
                report.max_in_flight[vendor] = (_max_in_flight(requests), CAP)
                continue
            start, end = self.redis_loss[0], self.redis_loss[1] + LATE_ANSWER_MS / 1000
            around = [r for r in requests if _overlaps(r, start, end)]
            others = [r for r in requests if not _overlaps(r, start, end)]
            report.max_in_flight[vendor] = (_max_in_flight(others), CAP)
            report.in_flight_at_redis_loss[vendor] = _max_in_flight(around)
        report.longest_recovery_s, slowest = self._longest_recovery_s()
        if slowest:
            report.problems.append(f"slowest recovery: {slowest}")
        return report

    def _longest_recovery_s(self) -> tuple[float, str]:
        """The longest time from a kill to the end of the next attempt of a job it interrupted.

        A job RUNNING at a kill was interrupted when its attempt never left a job log (its run
        died, or was fenced out, before recording); it recovered when a later attempt was
        recorded (or the job ended)."""
        jobs = {job_id for _when, running in self.kills for job_id in running}
        logs: dict[str, list[tuple[int, float]]] = {}
        finished: dict[str, float] = {}
        with self.stack.session_factory() as session:
            for job_id, attempt, at in session.execute(
                select(JobLog.job_id, JobLog.attempt, JobLog.created_at).where(
                    JobLog.job_id.in_(jobs)
                )
            ).all():
                logs.setdefault(job_id, []).append((attempt, at.timestamp()))
            for job_id, at in session.execute(
                select(Job.id, Job.finished_at).where(Job.id.in_(jobs))
            ).all():
                if at is not None:
                    finished[job_id] = at.timestamp()
        longest, slowest = 0.0, ""
        for when, running in self.kills:
            for job_id, attempt in running.items():
                if any(a == attempt for a, _at in logs.get(job_id, [])):
                    # That attempt was recorded (possibly just before the kill, after the
                    # snapshot of RUNNING jobs was read): the kill did not interrupt it.
                    continue
                after = [(a, at) for a, at in logs.get(job_id, []) if at >= when]
                later = [at for a, at in after if a > attempt]
                recovered = min(later) if later else finished.get(job_id)
                if recovered is not None and recovered - when > longest:
                    longest = recovered - when
                    slowest = (
                        f"job {job_id} attempt {attempt},"
                        f" killed at +{when - self.wall_start:.1f} s,"
                        f" next attempt recorded at +{recovered - self.wall_start:.1f} s;"
                        f" events: {self.events}; {self._timeline(job_id)}"
                    )
        return longest, slowest

    def _timeline(self, job_id: str) -> str:
        """What the job store says of one job: its row and each logged request, in run time."""
        with self.stack.session_factory() as session:
            job = session.get(Job, job_id)
            rows = session.execute(
                select(
                    JobLog.attempt,
                    JobLog.created_at,
                    JobLog.method,
                    JobLog.response_status,
                    JobLog.error,
                )
                .where(JobLog.job_id == job_id)
                .order_by(JobLog.created_at)
            ).all()
        start = self.wall_start
        steps = "; ".join(
            f"attempt {a} +{at.timestamp() - start:.1f} s {m} {st} {(err or '')[:60]}"
            for a, at, m, st, err in rows
        )
        head = (
            f"{job.model} {job.action} {job.status}, attempts {job.attempts}, "
            f"deliveries {job.deliveries}, created +{job.created_at.timestamp() - start:.1f} s"
            if job is not None
            else "gone"
        )
        return f"{head}; logs: {steps}"


def _max_in_window(requests: list[dict[str, Any]], window_s: float) -> int:
    """The most requests whose arrival falls in any half-open window of `window_s`."""
    starts = sorted(float(r["started_at"]) for r in requests)
    most, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def _overlaps(request: dict[str, Any], start: float, end: float) -> bool:
    began = float(request["started_at"])
    ended = float(request["ended_at"] or began)
    return began <= end and ended >= start


def _max_in_flight(requests: list[dict[str, Any]]) -> int:
    """The most requests in flight at once, each from its arrival until its answer or until
    the client gave up on it (PMSQ_PMS_TIMEOUT_S): a PMS still working on a request pmsq
    abandoned is past what a concurrency cap can hold."""
    edges: list[tuple[float, int]] = []
    for r in requests:
        began = float(r["started_at"])
        edges.append((began, 1))
        edges.append((min(float(r["ended_at"] or began), began + PMS_TIMEOUT_S), -1))
    most = current = 0
    for _at, step in sorted(edges, key=lambda e: (e[0], e[1])):
        current += step
        most = max(most, current)
    return most


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    report = run(Plan(writes=args.writes, database=args.database, seed=args.seed))
    print("\n".join(report.lines()))
    clean = not (report.lost or report.doubled or report.merged or report.not_final)
    return 0 if clean and report.within_limits else 1


if __name__ == "__main__":
    sys.exit(main())

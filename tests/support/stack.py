"""The whole write path as real processes: sandbox PMS, API, Celery worker(s).

Tests drive it over HTTP as a client would and read the sandbox's request records as the
judge; they look into the job store only to check what a client cannot see (logs, secrets).
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.auth import create_token
from pmsq.models.db import make_engine, make_session_factory
from support.processes import ManagedProcess, stop_all, wait_until
from support.services import free_port

FINAL = {"SUCCESS", "FAILURE", "PARTIAL_SUCCESS"}
#: Redis database of a stack's broker: emptied before a stack starts, never under a running
#: worker, whose queue bindings live there.
BROKER_REDIS_DB = 5
_workers = itertools.count(1)


@contextmanager
def running_stack(
    database_url: str, redis_server_url: str, env: Mapping[str, str] | None = None
) -> Iterator[Stack]:
    """A started `Stack` on `database_url` whose broker is database `BROKER_REDIS_DB` of the
    redis-server at `redis_server_url` (emptied first); every process is stopped on leaving."""
    url = redis_server_url.rsplit("/", 1)[0] + f"/{BROKER_REDIS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    stack = Stack(database_url, url, env)
    try:
        yield stack.start()
    finally:
        stack.stop()


#: How the tests run beat (a host of `support.netns` runs it inside its namespace).
BEAT_COMMAND = [
    sys.executable,
    "-m",
    "celery",
    "-A",
    "pmsq.workers.app",
    "beat",
    "--loglevel",
    "info",
]


def worker_command(concurrency: int, hostname: str) -> list[str]:
    """How the tests run a worker consuming pmsq's queue (on loopback or inside a host)."""
    return [
        sys.executable, "-m", "celery", "-A", "pmsq.workers.app", "worker",
        "-Q", "pmsq.jobs", "--concurrency", str(concurrency), "--loglevel", "info",
        "--hostname", hostname, "--without-gossip", "--without-mingle",
    ]  # fmt: skip


class Stack:
    def __init__(self, database_url: str, redis_url: str, env: Mapping[str, str] | None = None):
        self.database_url = database_url
        self.log_dir = Path(tempfile.mkdtemp(prefix="pmsq-e2e-"))
        self.env = {
            "PMSQ_DATABASE_URL": database_url,
            "PMSQ_REDIS_URL": redis_url,
            "PMSQ_AUTO_MIGRATE": "false",
            "PMSQ_RETRY_BASE_S": "0.05",
            "PMSQ_RETRY_MAX_S": "0.5",
            "PMSQ_PMS_TIMEOUT_S": "2",
            "PMSQ_JOB_LEASE_S": "4",
            "PMSQ_DISPATCH_INTERVAL_S": "0.1",
            # The sandbox and the tests' receivers listen on loopback, which pmsq refuses by
            # default; BUILDIUM integrations point at the sandbox instead of Buildium's hosts.
            "PMSQ_ALLOWED_OUTBOUND_NETWORKS": "127.0.0.0/8",
            "PMSQ_ALLOWED_PMS_HOSTS": "127.0.0.1",
            **(env or {}),
        }
        self.sandbox_port = free_port()
        self.api_port = free_port()
        # Every process runs in its log directory, not the checkout: `python -m` puts its cwd first
        # on sys.path, and in the checkout that would make the bare folder names (`workers`, ...)
        # importable, which an installed pmsq never offers.
        self.sandbox = ManagedProcess(
            [sys.executable, "-m", "pmsq.cli", "sandbox", "--port", str(self.sandbox_port)],
            name="sandbox", env=self.env, cwd=self.log_dir, log_dir=self.log_dir,
        )  # fmt: skip
        self.api = ManagedProcess(
            [sys.executable, "-m", "pmsq.cli", "api", "--port", str(self.api_port)],
            name="api", env=self.env, cwd=self.log_dir, log_dir=self.log_dir,
        )  # fmt: skip
        self.workers: list[ManagedProcess] = []
        self.beats: list[ManagedProcess] = []
        self._engine = make_engine(database_url)
        self.session_factory: sessionmaker[Session] = make_session_factory(self._engine)
        # Follows redirects as a Propexo client does (job log data is a 302 to a link).
        self.http = httpx.Client(timeout=10, follow_redirects=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def start(self) -> Stack:
        """Start the sandbox, the API and one worker, and return once all three answer.

        The three boot side by side (the worker needs neither the sandbox nor the API to start),
        so a stack is ready after its slowest process rather than after the sum of the three.
        """
        self.sandbox.start()
        self.api.start()
        worker = self._spawn_worker(concurrency=2)
        self.sandbox.wait_http(f"{self.sandbox_url}/_sandbox/health", deadline_s=30)
        self.api.wait_http(f"{self.api_url}/healthz", deadline_s=30)
        self._wait_ready(worker)
        return self

    def start_worker(self, concurrency: int = 2) -> ManagedProcess:
        """Start one more worker and return once it consumes from the queue."""
        worker = self._spawn_worker(concurrency)
        self._wait_ready(worker)
        return worker

    def _spawn_worker(self, concurrency: int) -> ManagedProcess:
        n = next(_workers)
        worker = ManagedProcess(
            worker_command(concurrency, f"e2e{n}@%h"),
            name=f"worker{n}", env=self.env, cwd=self.log_dir, log_dir=self.log_dir,
        ).start()  # fmt: skip
        self.workers.append(worker)
        return worker

    @staticmethod
    def _wait_ready(worker: ManagedProcess) -> None:
        worker.wait_until(lambda: "ready." in worker.log_text(), deadline_s=60)

    def start_beat(self) -> ManagedProcess:
        n = next(_workers)
        beat = ManagedProcess(
            BEAT_COMMAND,
            name=f"beat{n}", env=self.env, cwd=self.log_dir, log_dir=self.log_dir,
        ).start()  # fmt: skip
        self.beats.append(beat)
        return beat

    def stop(self) -> None:
        """Stop every process still running, all at once, and close the clients."""
        stop_all([*self.beats, *self.workers, self.api, self.sandbox], timeout_s=10)
        self.http.close()
        self._engine.dispose()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.log_tail()}"
            for p in [self.sandbox, self.api, *self.workers, *self.beats]
        )

    # -- a client's view -------------------------------------------------------------------

    def token(self, account: str) -> dict[str, str]:
        with self.session_factory.begin() as session:
            return {"Authorization": f"Bearer {create_token(session, account)}"}

    def integration(self, headers: dict[str, str], vendor: str, tenant: str, **extra: Any) -> str:
        body = {
            "name": f"{vendor} {tenant}",
            "integration_vendor": vendor,
            "active": True,
            "base_url": f"{self.sandbox_url}/t/{tenant}",
            "credentials": {"api_key": f"key-of-{tenant}-0123456789"},
            "max_request_frequency": 50,
            "max_job_concurrency": 4,
            **extra,
        }
        response = self.http.post(
            f"{self.api_url}/v1/admin/integrations/", json=body, headers=headers
        )
        assert response.status_code == 200, response.text
        return str(response.json()["result"]["id"])

    def write(
        self, headers: dict[str, str], model: str, body: dict[str, Any], *,
        record_id: str | None = None, params: dict[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        if record_id is None:
            return self.http.post(
                f"{self.api_url}/v1/{model}/", json=body, headers=headers, params=params
            )
        return self.http.put(
            f"{self.api_url}/v1/{model}/{record_id}", json=body, headers=headers, params=params
        )

    def status(self, headers: dict[str, str], job_id: str) -> httpx.Response:
        return self.http.get(f"{self.api_url}/v1/admin/write-status/{job_id}", headers=headers)

    def wait_final(
        self, headers: dict[str, str], job_id: str, deadline_s: float = 60
    ) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            body: dict[str, Any] = self.status(headers, job_id).json()
            return body if body.get("write_status") in FINAL else None

        return wait_until(
            final, deadline_s, 0.1, message=f"write {job_id} final", details=self.logs
        )

    # -- the sandbox, as judge ---------------------------------------------------------------

    def sandbox_requests(self, tenant: str) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.sandbox_url}/_sandbox/requests", params={"tenant": tenant})
        return list(response.json()["requests"])

    def sandbox_records(self, tenant: str, model: str) -> list[dict[str, Any]]:
        response = self.http.get(
            f"{self.sandbox_url}/_sandbox/records", params={"tenant": tenant, "model": model}
        )
        return list(response.json()["records"])

    def fault(self, **rule: Any) -> None:
        response = self.http.post(f"{self.sandbox_url}/_sandbox/faults", json=rule)
        assert response.status_code == 201, response.text

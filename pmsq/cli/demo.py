"""`make demo`: the whole write path end to end on this machine, in a few seconds.

Starts a throwaway redis-server, the sandbox PMS, the API, one Celery worker and beat (each in
its own process group, logs in a temp directory), creates a token, an integration speaking the
sandbox's generic dialect and a Buildium one (the sandbox answering that tenant on Buildium's
own wire), submits writes that succeed, fan out and partly fail, fail at the PMS, meet a
transient 503, or carry an unknown field, and prints each write's status as it changes until
all are final; then shows a sync that beat fired. Everything it started is stopped on the way
out, also on Ctrl-C and on errors. Exit 0 only if everything ended as expected; 2 if
redis-server is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import httpx
import redis

from pmsq.cli.supervisor import Supervised, free_port

T = TypeVar("T")

#: How long the services get to answer their readiness checks.
STARTUP_DEADLINE_S = 30.0
#: How long the writes get to reach a final status before the demo gives up.
FOLLOW_DEADLINE_S = 60.0
#: Pause between polls of a readiness check or of the write statuses.
POLL_INTERVAL_S = 0.1
#: Grace period of each child between SIGTERM and SIGKILL.
STOP_TIMEOUT_S = 10.0
#: The sandbox tenant the generic integration writes to (the last segment of its base URL).
TENANT = "demo"
#: The sandbox tenant that speaks Buildium, and the Buildium integration's credentials.
BUILDIUM_TENANT = "demo-buildium"
BUILDIUM_CREDENTIALS = {"client_id": "demo-client-id", "client_secret": "demo-client-secret"}
#: Requests per second Buildium allows an account: the Buildium integration's limit.
BUILDIUM_RATE_LIMIT_PER_S = 10
#: The demo integration's sync cadence, in seconds, and how long to wait for one sync.
SYNC_EVERY_S = 5
SYNC_DEADLINE_S = 30.0
FINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "PARTIAL_SUCCESS"})


class DemoError(RuntimeError):
    """Raised when the demo cannot go on: a service did not start, or the API answered badly."""


class Terminated(Exception):
    """Raised in the main thread on SIGTERM, so `finally` blocks stop the children."""


# -- what the demo submits --------------------------------------------------------------------


@dataclass(frozen=True)
class DemoWrite:
    """One write the demo submits, and the outcome it must reach."""

    label: str
    model: str
    body: dict[str, Any]
    expected_status: str
    #: A fragment that must appear in the final errors (None: no check).
    expected_error: str | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Tracked:
    """A submitted write and the latest status seen for it."""

    write: DemoWrite
    job_id: str
    status: str = "SUBMITTED"
    errors: list[Any] = field(default_factory=list)
    created_record_id: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def as_expected(self) -> bool:
        expected_error = self.write.expected_error
        return self.status == self.write.expected_status and (
            expected_error is None or expected_error in _error_text(self.errors)
        )


def demo_writes(integration_id: str) -> list[DemoWrite]:
    """The writes that show each path through the system (the 503 fault is set up apart)."""
    return [
        DemoWrite(
            "resident created",
            "residents",
            {
                "integration_id": integration_id,
                "first_name": "Ada",
                "last_name": "Lovelace",
                "email_1": "ada@example.com",
                "notes": "prefers email",
            },
            "SUCCESS",
        ),
        DemoWrite(
            "applicant + 3 contacts",
            "applicants",
            {
                "integration_id": integration_id,
                "first_name": "Grace",
                "last_name": "Hopper",
                "contacts": [
                    {"email_1": "grace@example.com"},
                    {"phone_1": "555-0100"},
                    {"phone_1": "not-a-phone"},
                ],
            },
            "PARTIAL_SUCCESS",
            expected_error="phone",
        ),
        DemoWrite(
            "resident without last_name",
            "residents",
            {"integration_id": integration_id, "first_name": "NoLastName"},
            "FAILURE",
            expected_error="last_name is required",
        ),
        DemoWrite(
            "lease after one 503",
            "leases",
            {
                "integration_id": integration_id,
                "resident_id": "residents-1",
                "unit_id": "u-1",
                "rent_amount_in_cents": 185000,
            },
            "SUCCESS",
        ),
    ]


def buildium_writes(integration_id: str) -> list[DemoWrite]:
    """Writes of the Buildium integration: each goes out in Buildium's own paths and fields."""
    return [
        DemoWrite(
            "buildium: applicant + notes",
            "applicants",
            {
                "integration_id": integration_id,
                "first_name": "Katherine",
                "last_name": "Johnson",
                "email_1": "kj@example.com",
                "notes": "asked about parking",  # a second call, in a child job
            },
            "SUCCESS",
        ),
        DemoWrite(
            "buildium: rental unit",
            "units",
            {
                "integration_id": integration_id,
                "name": "4B",
                "property_id": "3",
                "bedrooms": 2,
                "bathrooms": 1.5,
                "address_1": "1 Main St",
            },
            "SUCCESS",
        ),
        DemoWrite(
            "buildium: tenant, no lease",
            "residents",
            {"integration_id": integration_id, "first_name": "Dorothy", "last_name": "Vaughan"},
            "FAILURE",
            expected_error="lease_id (LeaseId)",
        ),
    ]


def unknown_field_write(integration_id: str) -> DemoWrite:
    """A resident with a field the vendor lacks: refused with 400, accepted once stripped."""
    return DemoWrite(
        "resident + favorite_color",
        "residents",
        {
            "integration_id": integration_id,
            "first_name": "Alan",
            "last_name": "Turing",
            "favorite_color": "blue",
        },
        "SUCCESS",
        params={"ignore_unknown_fields": "true"},
    )


# -- executables and environment --------------------------------------------------------------


def _console_script(name: str, module_fallback: Sequence[str]) -> list[str]:
    """The venv's console script `name`, else `python -m ...`, so the demo runs unactivated."""
    script = Path(sys.executable).parent / name
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, *module_fallback]


def pmsq_command() -> list[str]:
    return _console_script("pmsq", ["-m", "pmsq.cli"])


def celery_command() -> list[str]:
    return _console_script("celery", ["-m", "celery"])


def demo_env(run_dir: Path, redis_port: int) -> dict[str, str]:
    """The children's environment: the caller's, minus any PMSQ_* it had, plus the demo's.

    Inherited PMSQ_* variables (a broker URL, a database) would point the children at someone
    else's services, so they are dropped. Retries and leases are short so the demo is quick.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PMSQ_")}
    env.update(
        PMSQ_DATABASE_URL=f"sqlite:///{run_dir / 'pmsq.db'}",
        PMSQ_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        PMSQ_RETRY_BASE_S="0.2",
        PMSQ_PMS_TIMEOUT_S="2",
        PMSQ_JOB_LEASE_S="5",
        # The sandbox PMS runs on this host: loopback, which pmsq refuses unless allowed, and
        # the demo's BUILDIUM integration points at it instead of Buildium's own hosts.
        PMSQ_ALLOWED_OUTBOUND_NETWORKS="127.0.0.0/8",
        PMSQ_ALLOWED_PMS_HOSTS="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    return env


# -- starting and waiting ---------------------------------------------------------------------


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    watched: Sequence[Supervised],
    deadline_s: float = STARTUP_DEADLINE_S,
) -> T:
    """Poll `probe` until it returns a value; fail fast if a watched process exits.

    Polling, not sleeping a fixed time: the demo goes on the moment a service is ready, and a
    service that crashed is reported at once with its log instead of after the deadline.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        value = probe()
        if value is not None:
            return value
        for process in watched:
            if not process.is_running():
                raise DemoError(f"{process.name} exited while waiting for {what}")
        if time.monotonic() >= deadline:
            raise DemoError(f"{what} not ready within {deadline_s:g}s")
        time.sleep(POLL_INTERVAL_S)


def redis_ping(port: int) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
        try:
            return bool(client.ping()) or None
        except redis.RedisError:
            return None
        finally:
            client.close()

    return probe


def http_ok(url: str) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        try:
            return True if httpx.get(url, timeout=1.0).is_success else None
        except httpx.TransportError:
            return None

    return probe


def create_token(env: dict[str, str], run_dir: Path) -> str:
    """Run `pmsq token create demo`, which also migrates the fresh database."""
    result = subprocess.run(
        [*pmsq_command(), "token", "create", "demo"],
        env=env,
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=STARTUP_DEADLINE_S,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise DemoError(
            f"`pmsq token create demo` failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return lines[-1].strip()


@dataclass
class Services:
    """The processes the demo started, in start order, and where they listen."""

    run_dir: Path
    redis_port: int = field(default_factory=free_port)
    sandbox_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    processes: list[Supervised] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> Supervised:
        process = Supervised(name, args, log_dir=self.run_dir, env=env, cwd=self.run_dir)
        self.processes.append(process)
        return process.start()

    def stop_all(self) -> None:
        """Stop in reverse start order, so the worker finishes before redis goes away."""
        for process in reversed(self.processes):
            process.stop(timeout_s=STOP_TIMEOUT_S)

    def describe_all(self) -> str:
        return "\n".join(process.describe() for process in self.processes)


def redis_command(services: Services) -> list[str]:
    """A throwaway redis-server: loopback only, no snapshots, files in the run directory."""
    return [
        "redis-server",
        *("--port", str(services.redis_port), "--bind", "127.0.0.1"),
        *("--dir", str(services.run_dir), "--save", "", "--appendonly", "no"),
    ]


def start_services(services: Services) -> str:
    """Start redis, sandbox, API and worker; return the API token once they answer.

    The token is made before the API starts so the database is migrated by one process only.
    The worker is not waited for: jobs wait on the broker until it consumes them.
    """
    env = demo_env(services.run_dir, services.redis_port)
    redis_server = services.start("redis", redis_command(services), env)
    wait_for("redis PING", redis_ping(services.redis_port), [redis_server])
    token = create_token(env, services.run_dir)
    pmsq = pmsq_command()
    sandbox = services.start(
        "sandbox", [*pmsq, "sandbox", "--port", str(services.sandbox_port)], env
    )
    api = services.start("api", [*pmsq, "api", "--port", str(services.api_port)], env)
    celery = [*celery_command(), "-A", "pmsq.workers.app"]
    worker_args = ["worker", "--loglevel", "warning", "--concurrency", "2", "-Q", "pmsq.jobs"]
    services.start("worker", [*celery, *worker_args, "--hostname", "demo@%h"], env)
    services.start("beat", [*celery, "beat", "--loglevel", "warning"], env)
    wait_for("sandbox health", http_ok(f"{services.sandbox_url}/_sandbox/health"), [sandbox])
    wait_for("API /healthz", http_ok(f"{services.api_url}/healthz"), [api])
    return token


# -- talking to the API -----------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"


def _error_text(errors: list[Any]) -> str:
    return "; ".join(e if isinstance(e, str) else str(e) for e in errors)


def _expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise DemoError(
            f"{what}: expected HTTP {status}, got {response.status_code}: {response.text}"
        )
    body: dict[str, Any] = response.json()
    return body


def create_integration(api: httpx.Client, sandbox_url: str) -> str:
    response = api.post(
        "/v1/admin/integrations/",
        json={
            "name": "Demo generic",
            "integration_vendor": "SANDBOX",
            "active": True,
            "base_url": f"{sandbox_url}/t/{TENANT}",
            "credentials": {"api_key": "demo-secret-key"},
            # Beat syncs it from the PMS every few seconds, so the demo shows a sync too.
            "sync_frequency": SYNC_EVERY_S,
            "sync_cadence": "SECOND",
        },
    )
    integration_id: str = _expect(response, 200, "create integration")["result"]["id"]
    return integration_id


def create_buildium_integration(api: httpx.Client, sandbox: httpx.Client, sandbox_url: str) -> str:
    """A Buildium integration whose base URL is a sandbox tenant switched to Buildium's wire,
    limited to Buildium's published rate."""
    switched = sandbox.post(
        f"/_sandbox/tenants/{BUILDIUM_TENANT}/dialect", json={"dialect": "buildium"}
    )
    _expect(switched, 200, "switch the sandbox tenant to Buildium")
    response = api.post(
        "/v1/admin/integrations/",
        json={
            "name": "Demo Buildium",
            "integration_vendor": "BUILDIUM",
            "base_url": f"{sandbox_url}/t/{BUILDIUM_TENANT}",
            "credentials": BUILDIUM_CREDENTIALS,
            "max_request_frequency": BUILDIUM_RATE_LIMIT_PER_S,
            "max_request_cadence": "SECOND",
            "active": True,
        },
    )
    integration_id: str = _expect(response, 200, "create Buildium integration")["result"]["id"]
    return integration_id


def show_scheduled_sync(api: httpx.Client, integration_id: str) -> bool:
    """Wait for beat's next scheduled sync after the writes and print its counts."""
    url = f"/v1/admin/integrations/{integration_id}/sync-status"
    deadline = time.monotonic() + SYNC_DEADLINE_S
    while time.monotonic() < deadline:
        status = _expect(api.get(url), 200, "sync status")["data"]
        last = status.get("last_execution")
        if last and last["type"] == "scheduled" and last["status"] in ("completed", "failed"):
            counts = ", ".join(f"{k} {v}" for k, v in last["counts"].items())
            print(
                f"{_now()}  scheduled sync (every {SYNC_EVERY_S} s, fired by beat): "
                f"{last['status']}; {counts}; next at {status['next_execution_time']}",
                flush=True,
            )
            return bool(last["status"] == "completed")
        time.sleep(POLL_INTERVAL_S)
    print(f"{_now()}  no scheduled sync finished within {SYNC_DEADLINE_S} s", flush=True)
    return False


def submit(api: httpx.Client, write: DemoWrite) -> Tracked:
    response = api.post(f"/v1/{write.model}/", json=write.body, params=write.params)
    job_id: str = _expect(response, 200, f"submit '{write.label}'")["job_id"]
    print(f"{_now()}  {'submitted':<15} {write.label:<28} job {job_id}", flush=True)
    return Tracked(write, job_id)


def inject_503(sandbox: httpx.Client) -> None:
    """Make the sandbox answer the next lease creation with a 503, which the worker retries."""
    fault = {
        "tenant": TENANT,
        "method": "POST",
        "model": "leases",
        "kind": "status",
        "status": 503,
        "times": 1,
    }
    _expect(sandbox.post("/_sandbox/faults", json=fault), 201, "inject a 503 fault")


def show_unknown_field_refused(api: httpx.Client, write: DemoWrite) -> bool:
    """Submit `write` without its params; True if the API refused it with 400 at once."""
    response = api.post(f"/v1/{write.model}/", json=write.body)
    if response.status_code != 400:
        print(f"{_now()}  UNEXPECTED {response.status_code} for an unknown field: {response.text}")
        return False
    message = response.json().get("error", {}).get("message", response.text)
    print(f"{_now()}  {'refused (400)':<15} {write.label:<28} {message}", flush=True)
    return True


def poll_once(api: httpx.Client, tracked: Sequence[Tracked]) -> None:
    """Refresh every unfinished write and print a line for each status change."""
    for item in tracked:
        if item.final:
            continue
        body = _expect(api.get(f"/v1/admin/write-status/{item.job_id}"), 200, "write status")
        status = body["write_status"]
        if status == item.status:
            continue
        item.status = status
        item.errors = body.get("errors") or []
        item.created_record_id = body.get("created_record_id")
        errors = f"  errors: {_error_text(item.errors)}" if item.errors else ""
        print(
            f"{_now()}  {item.status:<15} {item.write.label:<28} "
            f"record={item.created_record_id or '-'}{errors}",
            flush=True,
        )


def follow(api: httpx.Client, tracked: Sequence[Tracked], services: Services) -> None:
    """Poll until every write is final; raise DemoError at the deadline or if a child died."""
    deadline = time.monotonic() + FOLLOW_DEADLINE_S
    while True:
        poll_once(api, tracked)
        if all(item.final for item in tracked):
            return
        for process in services.processes:
            if not process.is_running():
                raise DemoError(f"{process.name} exited while writes were in flight")
        if time.monotonic() >= deadline:
            pending = ", ".join(item.write.label for item in tracked if not item.final)
            raise DemoError(f"writes not final after {FOLLOW_DEADLINE_S:g}s: {pending}")
        time.sleep(POLL_INTERVAL_S)


# -- reporting --------------------------------------------------------------------------------


def print_summary(tracked: Sequence[Tracked], refused_ok: bool, sandbox: httpx.Client) -> None:
    print("\nSummary")
    _row("write", "expected", "got", "record", "ok")
    _row("favorite_color refused", "HTTP 400", "HTTP 400" if refused_ok else "?", "-", refused_ok)
    for item in tracked:
        write = item.write
        record = item.created_record_id or "-"
        _row(write.label, write.expected_status, item.status, record, item.as_expected)
    print()
    for tenant, wire in ((TENANT, "generic"), (BUILDIUM_TENANT, "Buildium")):
        requests = _expect(
            sandbox.get("/_sandbox/requests", params={"tenant": tenant}), 200, "sandbox requests"
        )["requests"]
        paths = sorted({f"{r['method']} {r['path'].split(tenant, 1)[1]}" for r in requests})
        print(f"The sandbox PMS received {len(requests)} requests for tenant '{tenant}' ({wire}):")
        print("  " + ", ".join(paths))


def _row(label: str, expected: str, got: str, record: str, ok: bool | str) -> None:
    mark = ok if isinstance(ok, str) else ("yes" if ok else "NO")
    print(f"  {label:<28} {expected:<16} {got:<16} {record:<14} {mark}")


def print_hints(services: Services) -> None:
    print(f"\nLogs and the SQLite database are in {services.run_dir}")
    print("  (redis.log, sandbox.log, api.log, worker.log, beat.log, pmsq.db); remove when done.")
    print(
        "Run the pieces yourself: `pmsq sandbox`, `pmsq api`, `celery -A pmsq.workers.app worker`;"
    )
    print("the API's OpenAPI document is at /docs while `pmsq api` runs.")


# -- the run ----------------------------------------------------------------------------------


def run(services: Services) -> bool:
    """Start everything, submit the writes, follow them; True if all ended as expected."""
    token = start_services(services)
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=services.api_url, headers=headers, timeout=10.0) as api,
        httpx.Client(base_url=services.sandbox_url, timeout=10.0) as sandbox,
    ):
        integration_id = create_integration(api, services.sandbox_url)
        buildium_id = create_buildium_integration(api, sandbox, services.sandbox_url)
        print(
            f"{_now()}  services up; integration {integration_id} (SANDBOX, generic wire, "
            f"tenant '{TENANT}'), integration {buildium_id} (BUILDIUM, Buildium's wire, tenant "
            f"'{BUILDIUM_TENANT}')\n",
            flush=True,
        )
        writes = demo_writes(integration_id) + buildium_writes(buildium_id)
        inject_503(sandbox)
        tracked = [submit(api, write) for write in writes]
        stripped = unknown_field_write(integration_id)
        refused_ok = show_unknown_field_refused(api, stripped)
        tracked.append(submit(api, stripped))  # now with ?ignore_unknown_fields=true
        print()
        follow(api, tracked, services)
        print_summary(tracked, refused_ok, sandbox)
        print()
        synced = show_scheduled_sync(api, integration_id)
    print_hints(services)
    return synced and refused_ok and all(item.as_expected for item in tracked)


def _raise_terminated(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated(signal.Signals(signum).name)


def main() -> int:
    """Run the demo; the exit status says whether every write ended as expected."""
    if shutil.which("redis-server") is None:
        print(
            "pmsq demo needs redis-server on PATH: apt-get install redis-server "
            "(or run `make demo`, which installs it when it can).",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, _raise_terminated)
    services = Services(Path(tempfile.mkdtemp(prefix="pmsq-demo-")))
    try:
        ok = run(services)
        print("\nAll writes ended as expected." if ok else "\nSome writes did NOT end as expected.")
        return 0 if ok else 1
    except (KeyboardInterrupt, Terminated):
        print("\ninterrupted; stopping what the demo started", file=sys.stderr)
        return 130
    except (DemoError, httpx.HTTPError) as exc:
        print(f"\ndemo failed: {exc}\n{services.describe_all()}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave children running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        services.stop_all()


if __name__ == "__main__":
    sys.exit(main())

"""The `pmsq` command line against a fake API (an `httpx.MockTransport` wired in as click's obj).

The fake answers the routes the client commands use with the API's real shapes, records every
request, and lets a test script how a write's status moves from poll to poll.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from pmsq.cli import commands as cli
from pmsq.cli.client import PmsqClient
from pmsq.cli.commands import CliWiring, app, main, watch_write

TOKEN = "pmsq_secret-token-value-0123456789"
ROOT = "job-root-1"
CHILD = "job-child-2"
INTEGRATION = {
    "id": "int-1",
    "name": "Sandbox acme",
    "integration_vendor": "SANDBOX",
    "base_url": "http://127.0.0.1:8001/t/acme",
    "active": True,
    "is_archived": False,
    "new_properties_are_enabled": True,
    "sync_frequency": 12,
    "sync_cadence": "HOUR",
    "max_request_frequency": 50.0,
    "max_request_cadence": "SECOND",
    "max_job_concurrency": 4,
    "custom_sync_schedule": None,
    "use_custom_sync_schedule": False,
    "has_credentials": True,
    "created_at": "2024-01-01T00:00:00",
    "updated_at": "2024-01-01T00:00:00",
}


def job_entry(
    job_id: str,
    status: str,
    *,
    parent: str | None = None,
    job_type: str = "applicants.CREATE",
    attempt: int | None = 1,
    attempt_status: str | None = None,
    logs: list[dict[str, Any]] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One entry of `GET /v1/admin/logs/jobs/{id}` (see `api/services/job_logs.py`)."""
    return {
        "id": job_id,
        "job_id": job_id,
        "root_job_id": ROOT,
        "parent_job_id": parent,
        "job_type": job_type,
        "status": status,
        "attempts": attempt or 0,
        "error": error,
        "created_record_id": "applicants-1" if job_id == ROOT and status == "SUCCESS" else None,
        "attempt": attempt,
        "attempt_status": attempt_status or status,
        "logs": logs or [],
    }


def log_entry(log_id: str, job_id: str, attempt: int, status: int | None) -> dict[str, Any]:
    return {
        "id": log_id,
        "job_id": job_id,
        "attempt": attempt,
        "method": "POST",
        "url": "http://127.0.0.1:8001/t/acme/applicants",
        "response_status": status,
        "duration_ms": 12.5,
        "error": None if status and status < 400 else "HTTP 503",
        "created_at": "2024-01-01T00:00:01",
    }


#: How a write fans out while it is watched: (write status, job tree entries) per poll.
PROGRESS: list[tuple[str, list[dict[str, Any]]]] = [
    ("PENDING", [job_entry(ROOT, "QUEUED", attempt=None)]),
    (
        "PENDING",
        [
            job_entry(ROOT, "SUCCESS", logs=[log_entry("log-1", ROOT, 1, 201)]),
            job_entry(CHILD, "RUNNING", parent=ROOT, job_type="contacts.CREATE", attempt=None),
        ],
    ),
    (
        "SUCCESS",
        [
            job_entry(ROOT, "SUCCESS", logs=[log_entry("log-1", ROOT, 1, 201)]),
            job_entry(
                CHILD,
                "SUCCESS",
                parent=ROOT,
                job_type="contacts.CREATE",
                logs=[log_entry("log-2", CHILD, 1, 201)],
            ),
        ],
    ),
]


@dataclass
class FakeApi:
    """Answers the client's routes; `progress` is consumed one step per write-status poll."""

    progress: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=lambda: list(PROGRESS))
    errors: list[str] = field(default_factory=list)
    #: (method, path) -> a response that replaces the normal answer.
    overrides: dict[tuple[str, str], httpx.Response] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    _step: int = -1

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        override = self.overrides.get((request.method, path))
        if override is not None:
            return override
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return error(401, "unauthorized", "missing or invalid bearer token")
        if path == "/v1/admin/integrations/" and request.method == "GET":
            return httpx.Response(
                200,
                json={
                    "meta": {"offset": 0, "limit": 100, "hasMore": False, "total": 1},
                    "results": [INTEGRATION],
                },
            )
        if path == "/v1/admin/integrations/" and request.method == "POST":
            return httpx.Response(200, json={"result": {**INTEGRATION, "id": "int-new"}})
        if path.startswith("/v1/admin/write-status/"):
            self._step = min(self._step + 1, len(self.progress) - 1)
            status = self.progress[self._step][0]
            final = status != "PENDING"
            return httpx.Response(
                200,
                json={
                    "write_status": status,
                    "errors": self.errors if final else [],
                    "created_record_id": "applicants-1" if final else None,
                },
            )
        if path.startswith("/v1/admin/logs/jobs/"):
            entries = self.progress[max(self._step, 0)][1]
            return httpx.Response(200, json={"meta": {}, "results": entries})
        if path.startswith("/v1/admin/job-logs/") and path.endswith("/data"):
            log_id = path.split("/")[4]
            link = f"/v1/admin/job-logs/{log_id}/raw?expires=9&signature=s"
            return httpx.Response(302, headers={"Location": link})
        if path.startswith("/v1/admin/job-logs/"):
            log_id = path.split("/")[4]
            return httpx.Response(
                200,
                json={
                    "id": log_id,
                    "job_id": ROOT,
                    "request": {
                        "method": "POST",
                        "url": "http://pms/t/acme/applicants",
                        "headers": {"authorization": "[REDACTED]"},
                        "body": {"last_name": "Hopper"},
                    },
                    "response": {"status": 201, "headers": {}, "body": {"id": "applicants-1"}},
                    "duration_ms": 12.5,
                    "error": None,
                },
            )
        if request.method in ("POST", "PUT") and path.startswith("/v1/"):
            return httpx.Response(200, json={"job_id": ROOT, "data": json.loads(request.content)})
        return error(404, "not_found", "Not Found")

    def last(self, method: str) -> httpx.Request:
        return [r for r in self.requests if r.method == method][-1]


def error(status: int, code: str, message: str, details: list[Any] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"code": code, "message": message, "details": {"fields": details or []}}},
    )


@dataclass
class FakeClock:
    """A clock that moves only when the watcher sleeps."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run(api: FakeApi, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.delenv("PMSQ_TOKEN", raising=False)
    monkeypatch.delenv("PMSQ_API_URL", raising=False)
    wiring = CliWiring(transport=httpx.MockTransport(api.handler), sleep=clock.sleep, clock=clock)

    def invoke(*args: str, token: bool = True, input: str | None = None) -> Result:
        argv = [*args, "--token", TOKEN] if token else list(args)
        result = CliRunner().invoke(
            app, argv, obj=wiring, input=input, env={"COLUMNS": "200", "NO_COLOR": "1"}
        )
        assert TOKEN not in result.output, "the token must never be printed"
        return result

    return invoke


# -- running the processes ----------------------------------------------------------------------


def test_token_create_prints_only_the_token(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts: list[str] = []
    monkeypatch.setattr(cli, "_create_token", lambda account: accounts.append(account) or "tok-1")
    result = run("token", "create", "acme", token=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == "tok-1\n"
    assert accounts == ["acme"]


def test_api_and_sandbox_take_host_and_port(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[tuple[str, str, int]] = []
    monkeypatch.setattr(cli, "_serve_api", lambda host, port: served.append(("api", host, port)))
    import pmsq.pms.sandbox.server

    monkeypatch.setattr(
        pmsq.pms.sandbox.server, "run", lambda host, port: served.append(("sandbox", host, port))
    )
    assert run("api", "--port", "9001", token=False).exit_code == 0
    assert run("sandbox", "--host", "0.0.0.0", "--port", "9002", token=False).exit_code == 0
    assert served == [("api", "127.0.0.1", 9001), ("sandbox", "0.0.0.0", 9002)]


def test_demo_exits_with_the_demos_code(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pmsq.cli.demo

    monkeypatch.setattr(pmsq.cli.demo, "main", lambda: 2)
    assert run("demo", token=False).exit_code == 2
    monkeypatch.setattr(pmsq.cli.demo, "main", lambda: 0)
    assert run("demo", token=False).exit_code == 0


def test_main_returns_the_exit_code_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "integrations" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2


# -- integrations -------------------------------------------------------------------------------


def test_integrations_list_shows_a_table_and_sends_the_token(
    run: Callable[..., Result], api: FakeApi
) -> None:
    result = run("integrations", "list", "--url", "http://api.test")
    assert result.exit_code == 0, result.output
    for text in ["int-1", "Sandbox acme", "SANDBOX", "http://127.0.0.1:8001/t/acme", "50/SECOND"]:
        assert text in result.stdout
    request = api.last("GET")
    assert request.url.host == "api.test"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.url.params["limit"] == "100"


def test_token_and_url_come_from_the_environment(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    wiring = CliWiring(transport=httpx.MockTransport(api.handler))
    result = CliRunner().invoke(
        app,
        ["integrations", "list"],
        obj=wiring,
        env={"PMSQ_TOKEN": TOKEN, "PMSQ_API_URL": "http://env.test:9"},
    )
    assert result.exit_code == 0, result.output
    assert api.last("GET").url.host == "env.test"
    assert TOKEN not in result.output


def test_a_missing_token_is_a_usage_error(run: Callable[..., Result], api: FakeApi) -> None:
    result = run("integrations", "list", token=False)
    assert result.exit_code == 2
    assert "PMSQ_TOKEN" in result.output
    assert api.requests == []


def test_integrations_create_sends_the_spec_and_never_prints_credentials(
    run: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    credentials = tmp_path / "creds.json"
    credentials.write_text(json.dumps({"api_key": "very-secret-key"}))
    result = run(
        "integrations", "create", "--name", "Sandbox acme", "--vendor", "sandbox",
        "--base-url", "http://127.0.0.1:8001/t/acme", "--credentials-file", str(credentials),
        "--max-request-frequency", "50", "--max-request-cadence", "second",
        "--max-job-concurrency", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "int-new" in result.stdout
    assert "very-secret-key" not in result.output
    assert json.loads(api.last("POST").content) == {
        "name": "Sandbox acme",
        "integration_vendor": "SANDBOX",
        "base_url": "http://127.0.0.1:8001/t/acme",
        "active": True,
        "credentials": {"api_key": "very-secret-key"},
        "max_request_frequency": 50.0,
        "max_request_cadence": "SECOND",
        "max_job_concurrency": 4,
    }


def test_integrations_create_quiet_prints_the_id_and_reads_credentials_json(
    run: Callable[..., Result], api: FakeApi
) -> None:
    result = run(
        "integrations", "create", "-q", "--name", "n", "--vendor", "BUILDIUM",
        "--base-url", "http://pms", "--credentials-json", '{"api_key": "k"}',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "int-new\n"
    assert json.loads(api.last("POST").content)["credentials"] == {"api_key": "k"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--credentials-json", "{", "--credentials-file", "x"], "not both"),
        (["--credentials-json", "{not json"], "not valid JSON"),
        (["--credentials-json", "[1]"], "JSON object"),
        (["--credentials-file", "/no/such/file.json"], "cannot read"),
    ],
)
def test_integrations_create_refuses_bad_credentials(
    run: Callable[..., Result], api: FakeApi, extra: list[str], message: str
) -> None:
    result = run(
        "integrations", "create", "--name", "n", "--vendor", "SANDBOX", "--base-url", "http://x",
        *extra,
    )  # fmt: skip
    assert result.exit_code == 2
    assert message in result.output
    assert api.requests == []


def test_an_api_error_prints_its_message_and_each_detail(
    run: Callable[..., Result], api: FakeApi
) -> None:
    api.overrides[("POST", "/v1/admin/integrations/")] = error(
        400,
        "validation_error",
        "invalid request: max_request_frequency: too low",
        [
            {"field": "max_request_frequency", "reason": "below one request per minute"},
            {"field": "base_url", "reason": "must be an http(s) URL"},
        ],
    )
    result = run(
        "integrations", "create", "--name", "n", "--vendor", "SANDBOX", "--base-url", "http://x"
    )
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "invalid request: max_request_frequency: too low" in result.stderr
    assert "HTTP 400, validation_error" in result.stderr
    assert "max_request_frequency: below one request per minute" in result.stderr
    assert "base_url: must be an http(s) URL" in result.stderr


def test_an_error_body_of_another_shape_is_shown_as_text(
    run: Callable[..., Result], api: FakeApi
) -> None:
    api.overrides[("GET", "/v1/admin/integrations/")] = httpx.Response(502, text="Bad Gateway!")
    result = run("integrations", "list")
    assert result.exit_code == 3
    assert "Bad Gateway!" in result.stderr and "HTTP 502" in result.stderr


def test_an_unreachable_api_is_reported(run: Callable[..., Result], api: FakeApi) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    wiring = CliWiring(transport=httpx.MockTransport(refuse))
    result = CliRunner().invoke(
        app, ["integrations", "list", "--token", TOKEN, "--url", "http://down.test"], obj=wiring
    )
    assert result.exit_code == 3
    assert "cannot reach the pmsq API at http://down.test" in result.stderr
    assert TOKEN not in result.output


# -- write --------------------------------------------------------------------------------------


def test_write_posts_the_file_and_prints_only_the_job_id(
    run: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    body = {"integration_id": "int-1", "last_name": "Hopper"}
    path = tmp_path / "resident.json"
    path.write_text(json.dumps(body))
    result = run("write", "residents", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{ROOT}\n"
    assert f"pmsq status {ROOT} --watch" in result.stderr
    request = api.last("POST")
    assert request.url.path == "/v1/residents/"
    assert json.loads(request.content) == body
    assert "ignore_unknown_fields" not in request.url.params
    assert "idempotency-key" not in request.headers


def test_write_with_id_updates_and_passes_the_flags(
    run: Callable[..., Result], api: FakeApi
) -> None:
    api.overrides[("PUT", "/v1/residents/rec-9")] = httpx.Response(
        200, json={"job_id": ROOT, "data": {}}, headers={"Idempotent-Replayed": "true"}
    )
    result = run(
        "write", "residents", "-", "--id", "rec-9", "--ignore-unknown-fields",
        "--idempotency-key", "k-1", input='{"email_1": "a@example.com"}',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{ROOT}\n"
    assert "replayed" in result.stderr
    request = api.last("PUT")
    assert json.loads(request.content) == {"email_1": "a@example.com"}
    assert request.url.params["ignore_unknown_fields"] == "true"
    assert request.headers["idempotency-key"] == "k-1"


@pytest.mark.parametrize(
    ("content", "message"), [("{oops", "not valid JSON"), ("[1, 2]", "JSON object")]
)
def test_write_refuses_a_bad_file(
    run: Callable[..., Result], api: FakeApi, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = run("write", "residents", str(path))
    assert result.exit_code == 2
    assert message in result.output
    assert api.requests == []


def test_write_refused_for_an_unknown_field_shows_the_field(
    run: Callable[..., Result], api: FakeApi
) -> None:
    api.overrides[("POST", "/v1/residents/")] = error(
        400,
        "unknown_fields",
        "RENT_MANAGER does not support residents field(s): notes",
        [{"field": "notes", "reason": "not supported by RENT_MANAGER"}],
    )
    result = run("write", "residents", "-", input='{"notes": "x"}')
    assert result.exit_code == 3
    assert "does not support residents field(s): notes" in result.stderr
    assert "notes: not supported by RENT_MANAGER" in result.stderr


def test_write_watch_follows_the_write(
    run: Callable[..., Result], api: FakeApi, clock: FakeClock
) -> None:
    result = run("write", "applicants", "-", "--watch", "--interval", "0.25", input="{}")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{ROOT}\n")
    assert "write job-root-1  SUCCESS" in result.stdout
    assert clock.sleeps == [0.25, 0.25]


# -- status -------------------------------------------------------------------------------------


def test_status_watch_draws_the_tree_until_final(
    run: Callable[..., Result], api: FakeApi, clock: FakeClock
) -> None:
    result = run("status", ROOT, "--watch", "--interval", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    # Not a terminal: one line per change, then the final view.
    assert "PENDING  0/1 jobs finished" in out
    assert "PENDING  1/2 jobs finished" in out
    assert "SUCCESS  2/2 jobs finished" in out
    assert out.index("PENDING  0/1") < out.index("PENDING  1/2") < out.index("SUCCESS  2/2")
    final = out[out.index("SUCCESS  2/2") :]
    assert "write job-root-1  SUCCESS" in final
    assert "applicants.CREATE" in final and "contacts.CREATE" in final
    assert "POST http://127.0.0.1:8001/t/acme/applicants -> 201" in final
    assert "created record id: applicants-1" in final
    assert clock.sleeps == [2.0, 2.0]
    status_polls = [r for r in api.requests if "/write-status/" in r.url.path]
    tree_polls = [r for r in api.requests if "/logs/jobs/" in r.url.path]
    assert len(status_polls) == len(tree_polls) == 3
    assert all(r.url.params["include_all_jobs"] == "true" for r in tree_polls)


def test_status_watch_redraws_in_place_on_a_terminal(api: FakeApi, clock: FakeClock) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    with PmsqClient("http://api.test", TOKEN, transport=httpx.MockTransport(api.handler)) as client:
        final = watch_write(client, ROOT, console, interval_s=0.5, sleep=clock.sleep, clock=clock)
    assert final == "SUCCESS"
    frames = buffer.getvalue()
    assert frames.count("write job-root-1") >= 3  # one frame per poll
    assert frames.index("0/1 jobs finished") < frames.index("1/2 jobs finished")
    assert frames.index("1/2 jobs finished") < frames.index("2/2 jobs finished")
    assert "━" in frames  # the progress bar
    assert TOKEN not in frames


@pytest.mark.parametrize("final", ["FAILURE", "PARTIAL_SUCCESS"])
def test_status_watch_exits_1_when_the_write_failed(
    run: Callable[..., Result], api: FakeApi, final: str
) -> None:
    api.progress = [
        PROGRESS[0],
        (
            final,
            [
                job_entry(ROOT, "SUCCESS"),
                job_entry(
                    CHILD, "FAILURE", parent=ROOT, job_type="contacts.CREATE",
                    error="phone: not-a-phone is not a phone number",
                ),
            ],
        ),
    ]  # fmt: skip
    api.errors = ["contacts.CREATE: phone: not-a-phone is not a phone number"]
    result = run("status", ROOT, "--watch", "--interval", "0")
    assert result.exit_code == 1
    assert f"write job-root-1  {final}" in result.stdout
    assert "error: contacts.CREATE: phone: not-a-phone" in result.stdout


def test_status_without_watch_polls_once(run: Callable[..., Result], api: FakeApi) -> None:
    result = run("status", ROOT)
    assert result.exit_code == 4  # still PENDING
    assert "write job-root-1  PENDING" in result.stdout
    api.progress = [PROGRESS[-1]]
    api._step = -1
    result = run("status", ROOT)
    assert result.exit_code == 0
    assert "write job-root-1  SUCCESS" in result.stdout


def test_status_watch_gives_up_after_the_timeout(
    run: Callable[..., Result], api: FakeApi, clock: FakeClock
) -> None:
    api.progress = [PROGRESS[0]]
    result = run("status", ROOT, "--watch", "--interval", "1", "--timeout", "3")
    assert result.exit_code == 4
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert "write job-root-1  PENDING" in result.stdout


def test_status_of_an_unknown_job_is_an_api_error(run: Callable[..., Result], api: FakeApi) -> None:
    api.overrides[("GET", "/v1/admin/write-status/nope")] = error(
        404, "not_found", "no write with id 'nope'"
    )
    result = run("status", "nope", "--watch")
    assert result.exit_code == 3
    assert "no write with id 'nope'" in result.stderr and "HTTP 404" in result.stderr


# -- logs ---------------------------------------------------------------------------------------


def test_logs_shows_each_attempt_and_exchange(run: Callable[..., Result], api: FakeApi) -> None:
    api.progress = [
        (
            "SUCCESS",
            [
                job_entry(
                    ROOT, "SUCCESS", attempt=1, attempt_status="RETRIED",
                    logs=[log_entry("log-1", ROOT, 1, 503)],
                ),
                job_entry(ROOT, "SUCCESS", attempt=2, logs=[log_entry("log-2", ROOT, 2, 201)]),
                job_entry(CHILD, "QUEUED", parent=ROOT, job_type="contacts.CREATE", attempt=None),
            ],
        )
    ]  # fmt: skip
    result = run("logs", ROOT)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    retried = next(line for line in lines if "log-1" in line)
    assert "RETRIED" in retried and "POST" in retried and "503" in retried
    assert "HTTP 503" in retried
    succeeded = next(line for line in lines if "log-2" in line)
    assert "SUCCESS" in succeeded and "201" in succeeded and "│ 12 │" in succeeded
    child = next(i for i, line in enumerate(lines) if "contacts.CREATE" in line)
    assert "QUEUED" in lines[child] and CHILD in lines[child + 1]  # the job id under its type
    assert "POST /t/acme/applicants" in retried  # the path; the full URL is in --raw
    assert api.last("GET").url.params["include_all_jobs"] == "true"


def test_logs_only_this_job(run: Callable[..., Result], api: FakeApi) -> None:
    assert run("logs", ROOT, "--only-this-job").exit_code == 0
    assert api.last("GET").url.params["include_all_jobs"] == "false"


def test_logs_raw_prints_the_exchange_as_json(run: Callable[..., Result], api: FakeApi) -> None:
    result = run("logs", "--raw", "log-7")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id"] == "log-7"
    assert data["request"]["headers"] == {"authorization": "[REDACTED]"}
    assert [r.url.path for r in api.requests if r.method == "GET"] == [
        "/v1/admin/job-logs/log-7/data",
        "/v1/admin/job-logs/log-7/raw",
    ]


@pytest.mark.parametrize("args", [[], [ROOT, "--raw", "log-1"]])
def test_logs_needs_a_job_id_or_raw(
    run: Callable[..., Result], api: FakeApi, args: list[str]
) -> None:
    result = run("logs", *args)
    assert result.exit_code == 2
    assert "--raw LOG_ID" in result.output
    assert api.requests == []


def test_logs_of_another_accounts_job_is_an_api_error(
    run: Callable[..., Result], api: FakeApi
) -> None:
    api.overrides[("GET", "/v1/admin/logs/jobs/theirs")] = error(
        404, "not_found", "no job with id 'theirs'"
    )
    result = run("logs", "theirs")
    assert result.exit_code == 3
    assert "no job with id 'theirs'" in result.stderr

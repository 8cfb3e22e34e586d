"""The `pmsq` command line against the real stack, run as a user runs it: `python -m pmsq.cli`.

token create -> integrations create -> write FILE.json -> status --watch -> logs; the sandbox
PMS's request records are the judge of what reached the PMS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from support.stack import Stack

#: Generous: `status --watch` waits for a real worker.
CLI_DEADLINE_S = 90.0


def pmsq(stack: Stack, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env, "PMSQ_API_URL": stack.api_url, "COLUMNS": "200"}
    env.pop("PMSQ_TOKEN", None)
    if token is not None:
        env["PMSQ_TOKEN"] = token
    result = subprocess.run(
        [sys.executable, "-m", "pmsq.cli", *args],
        env=env,
        cwd=stack.log_dir,
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE_S,
        check=False,
    )
    if token is not None:
        assert token not in result.stdout + result.stderr, "the token must never be printed"
    return result


def test_a_write_from_the_command_line(stack: Stack, tmp_path: Path) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    made = pmsq(stack, "token", "create", "cli-user")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout == f"{token}\n" and token, "token create prints only the token"

    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({"api_key": f"key-of-{tenant}-0123456789"}))
    created = pmsq(
        stack, "integrations", "create", "--quiet", "--name", f"cli {tenant}",
        "--vendor", "SANDBOX", "--base-url", f"{stack.sandbox_url}/t/{tenant}",
        "--credentials-file", str(credentials), "--max-request-frequency", "50",
        "--max-job-concurrency", "4",
        token=token,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    integration_id = created.stdout.strip()
    listed = pmsq(stack, "integrations", "list", token=token)
    assert listed.returncode == 0, listed.stderr
    assert integration_id in listed.stdout and f"cli {tenant}" in listed.stdout
    assert "0123456789" not in listed.stdout

    body = tmp_path / "resident.json"
    body.write_text(json.dumps({"integration_id": integration_id, "last_name": "Lovelace"}))
    written = pmsq(stack, "write", "residents", str(body), token=token)
    assert written.returncode == 0, written.stderr
    job_id = written.stdout.strip()
    assert written.stdout == f"{job_id}\n"

    watched = pmsq(stack, "status", job_id, "--watch", "--interval", "0.1", token=token)
    assert watched.returncode == 0, watched.stdout + watched.stderr + stack.logs()
    assert f"write {job_id}  SUCCESS" in watched.stdout
    assert "residents.CREATE  SUCCESS" in watched.stdout
    record = stack.sandbox_records(tenant, "residents")[0]
    assert f"created record id: {record['id']}" in watched.stdout

    logged = pmsq(stack, "logs", job_id, token=token)
    assert logged.returncode == 0, logged.stderr
    assert f"POST /t/{tenant}/residents" in logged.stdout
    assert "201" in logged.stdout
    [request] = stack.sandbox_requests(tenant)
    assert (request["method"], request["path"]) == ("POST", f"/t/{tenant}/residents")


def test_a_failed_write_exits_1_and_an_api_error_exits_3(stack: Stack, tmp_path: Path) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    token = pmsq(stack, "token", "create", "cli-user").stdout.strip()
    integration_id = pmsq(
        stack, "integrations", "create", "-q", "--name", "n", "--vendor", "SANDBOX",
        "--base-url", f"{stack.sandbox_url}/t/{tenant}", "--credentials-json",
        '{"api_key": "k-0123456789"}', "--max-request-frequency", "50",
        token=token,
    ).stdout.strip()  # fmt: skip
    body = tmp_path / "no-last-name.json"
    body.write_text(json.dumps({"integration_id": integration_id, "first_name": "X"}))
    job_id = pmsq(stack, "write", "residents", str(body), token=token).stdout.strip()

    watched = pmsq(stack, "status", job_id, "--watch", "--interval", "0.1", token=token)
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert f"write {job_id}  FAILURE" in watched.stdout
    assert "last_name is required" in watched.stdout

    refused = pmsq(stack, "status", "no-such-job", token=token)
    assert refused.returncode == 3
    assert "HTTP 404" in refused.stderr
    unauthorized = pmsq(stack, "integrations", "list", token="not-a-token")
    assert unauthorized.returncode == 3 and "HTTP 401" in unauthorized.stderr

"""Flower, as an operator uses it: every job is a task that says which job and integration it is.

A real `celery -A pmsq.workers.app flower` watches the stack's broker. The workers send task
events only once a monitor asks (they are off in the app's configuration): Flower's own
`enable_events` broadcast turns them on, nothing is enabled from outside. The writes are then
found through Flower's HTTP API (`/api/tasks`), by task name and by the operator's search
`kwargs:integration_id=<id>`.
"""

from __future__ import annotations

import ast
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.processes import ManagedProcess, wait_until
from support.services import free_port
from support.stack import Stack

from pmsq.workers.publisher import RUN_JOB_TASK

#: Flower's HTTP API answers only behind authentication.
FLOWER_AUTH = ("ops", "flower-e2e-password")


class Flower:
    def __init__(self, process: ManagedProcess, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, auth=FLOWER_AUTH, timeout=10)

    def tasks(self, **params: str) -> dict[str, dict[str, Any]]:
        response = self.http.get("/api/tasks", params=params)
        assert response.status_code == 200, response.text
        tasks: dict[str, dict[str, Any]] = response.json()
        return tasks

    def workers_seen(self) -> list[str]:
        """Workers Flower has received events from (its live event receiver is running)."""
        response = self.http.get("/workers", params={"json": "1"})
        assert response.status_code == 200, response.text
        return [str(worker["hostname"]) for worker in response.json()["data"]]


@pytest.fixture(scope="module")
def flower(stack: Stack) -> Iterator[Flower]:
    port = free_port()
    process = ManagedProcess(
        [
            sys.executable, "-m", "celery", "-A", "pmsq.workers.app", "flower",
            f"--port={port}", "--address=127.0.0.1",
            f"--basic-auth={FLOWER_AUTH[0]}:{FLOWER_AUTH[1]}",
        ],
        name="flower", env=stack.env, cwd=stack.log_dir, log_dir=stack.log_dir,
    ).start()  # fmt: skip
    flower = Flower(process, port)
    try:
        process.wait_http(f"{flower.url}/healthcheck", deadline_s=60)
        # Tasks run before Flower's event receiver is up are never seen: wait until it has
        # heard a worker's heartbeat (every 2 s).
        process.wait_until(
            lambda: any(name.startswith("e2e") for name in flower.workers_seen()),
            deadline_s=30,
            interval_s=0.25,
            message="Flower receives the workers' events",
        )
        _wait_for_task_events(stack, flower)
        yield flower
    finally:
        flower.http.close()
        process.stop(timeout_s=10)


def _wait_for_task_events(stack: Stack, flower: Flower) -> None:
    """Heartbeats flow from the start, task events only once the workers honoured Flower's
    `enable_events` (sent every 5 s): until then a probe write's task is never listed."""
    headers = stack.token("acme")
    probe = stack.integration(headers, "SANDBOX", f"probe{uuid.uuid4().hex[:8]}")

    def probe_listed() -> bool:
        response = stack.write(headers, "residents", {"integration_id": probe, "last_name": "P"})
        assert response.status_code == 200, response.text
        return bool(flower.tasks(search=f"kwargs:integration_id={probe}"))

    flower.process.wait_until(
        probe_listed, deadline_s=60, interval_s=1.0, message="Flower turns task events on"
    )


def test_flower_requires_authentication(flower: Flower) -> None:
    response = httpx.get(f"{flower.url}/api/tasks", timeout=10)
    assert response.status_code == 401


def test_flower_shows_each_job_with_its_integration_and_step(stack: Stack, flower: Flower) -> None:
    headers = stack.token("acme")
    integration_id = stack.integration(headers, "SANDBOX", f"fl{uuid.uuid4().hex[:8]}")
    other_id = stack.integration(headers, "SANDBOX", f"fl{uuid.uuid4().hex[:8]}")
    job_ids = []
    for n in range(3):
        response = stack.write(
            headers, "residents", {"integration_id": integration_id, "last_name": f"Ride{n}"}
        )
        assert response.status_code == 200, response.text
        job_ids.append(response.json()["job_id"])
    other_job = stack.write(
        headers, "residents", {"integration_id": other_id, "last_name": "Other"}
    ).json()["job_id"]
    for job_id in [*job_ids, other_job]:
        assert stack.wait_final(headers, job_id)["write_status"] == "SUCCESS"

    def succeeded_by_job() -> dict[str, dict[str, Any]] | None:
        found = {
            _job_id(task): task
            for task in flower.tasks(taskname=RUN_JOB_TASK).values()
            if task["state"] == "SUCCESS"
        }
        return found if set(job_ids) | {other_job} <= set(found) else None

    by_job = flower.process.wait_until(
        succeeded_by_job, deadline_s=30, interval_s=0.25, message="Flower lists every job's task"
    )
    for job_id in job_ids:
        task = by_job[job_id]
        assert task["name"] == RUN_JOB_TASK
        assert task["worker"].startswith("e2e")
        assert ast.literal_eval(task["kwargs"]) == {
            "integration_id": integration_id,
            "step": "residents.CREATE",
        }

    # The operator's question "what ran for this integration?" is one search.
    def searched() -> set[str] | None:
        found = flower.tasks(search=f"kwargs:integration_id={integration_id}")
        ids = {_job_id(task) for task in found.values()}
        return ids if set(job_ids) <= ids else None

    found = wait_until(searched, 10, 0.25, message="search by integration finds its tasks")
    assert other_job not in found
    assert found == set(job_ids)


def test_flower_shows_a_failed_write_as_failed_and_a_retry_as_retried(
    stack: Stack, flower: Flower
) -> None:
    """The task's state is the job's: FAILURE with the PMS's error for a job that failed, RETRY
    with the attempt's error for one that will be retried, SUCCESS for one that succeeded; and
    every one of those messages is acked (none is left for the broker to deliver again)."""
    headers = stack.token("acme")
    tenant = f"fl{uuid.uuid4().hex[:8]}"
    integration_id = stack.integration(headers, "SANDBOX", tenant)
    # The sandbox answers 422 "last_name is required".
    failing = stack.write(headers, "residents", {"integration_id": integration_id}).json()
    succeeding = stack.write(
        headers, "residents", {"integration_id": integration_id, "last_name": "Fine"}
    ).json()
    stack.fault(tenant=tenant, method="POST", model="leases", kind="status", status=503, times=1)
    retried = stack.write(
        headers,
        "leases",
        {"integration_id": integration_id, "unit_id": "u1", "rent_amount_in_cents": 90000},
    ).json()
    assert stack.wait_final(headers, failing["job_id"])["write_status"] == "FAILURE"
    assert stack.wait_final(headers, succeeding["job_id"])["write_status"] == "SUCCESS"
    assert stack.wait_final(headers, retried["job_id"])["write_status"] == "SUCCESS"
    # Runs of each job, as Flower shows them. A message delivered twice (an admission lease
    # that lapsed on a loaded machine) is dropped at claim: a SUCCESS whose result is None.
    wanted = {
        failing["job_id"]: ["FAILURE"],
        succeeding["job_id"]: ["SUCCESS"],
        retried["job_id"]: ["RETRY", "SUCCESS"],
    }

    def runs_by_job() -> dict[str, list[dict[str, Any]]] | None:
        found: dict[str, list[dict[str, Any]]] = {}
        for uuid_, task in flower.tasks(search=f"kwargs:integration_id={integration_id}").items():
            if task["state"] in ("FAILURE", "RETRY") or (
                task["state"] == "SUCCESS" and task["result"] != "None"
            ):
                found.setdefault(_job_id(task), []).append({**task, "uuid": uuid_})
        states = {job_id: sorted(t["state"] for t in runs) for job_id, runs in found.items()}
        return found if all(states.get(j) == s for j, s in wanted.items()) else None

    by_job = flower.process.wait_until(
        runs_by_job, deadline_s=60, interval_s=0.25, message="Flower shows every run's end"
    )
    [failed] = by_job[failing["job_id"]]
    assert "JobFailed" in failed["exception"]
    assert "PMS answered 422" in failed["exception"]
    assert "last_name is required" in failed["exception"]
    [succeeded] = by_job[succeeding["job_id"]]
    assert succeeded["result"] == "'SUCCESS'"
    assert succeeded["exception"] is None
    [first] = [task for task in by_job[retried["job_id"]] if task["state"] == "RETRY"]
    assert "PMS answered 503" in first["exception"]


def test_flower_knows_the_job_task(flower: Flower) -> None:
    response = flower.http.get("/api/task/types")
    assert response.status_code == 200, response.text
    assert RUN_JOB_TASK in response.json()["task-types"]


def _job_id(task: dict[str, Any]) -> str:
    """The job id from a task's args as Flower shows them (a repr of the argument list)."""
    args = ast.literal_eval(task["args"])
    assert isinstance(args, list | tuple) and len(args) == 1, task["args"]
    return str(args[0])

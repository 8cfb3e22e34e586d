"""Workers on three separate hosts (network namespaces) sharing one Redis and one PostgreSQL,
with the API and beat on hosts of their own.

Each host is a network namespace of its own (`support.netns`) with one `celery worker
--concurrency 2`; the servers, the API and the sandbox PMS listen on the bridge the hosts hang
off, and every process has the same `PMSQ_*` settings, as machines of one deployment would.
The sandbox judges, and it records each request's sender, so it tells the hosts apart:

- every write is delivered exactly once and the rate limit and concurrency cap hold at the PMS
  across the hosts, which all take part;
- a host whose link goes down while its requests are in flight loses nothing: the other hosts
  finish every write (its jobs once their leases lapse), nothing is doubled, the limits hold,
  and once its link is back it stops each job it had without sending (fencing).

Skipped, with the reason, where network namespaces cannot be created (not root, no `ip`).
How long the cut-off host's jobs took to resume elsewhere is printed (`-s`), not asserted.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.judge import max_in_flight, max_in_window
from support.netns import Hosts, HostsStack, running_hosts_stack, why_impossible
from support.processes import wait_until
from support.services import PostgresServer, RedisServer
from support.stack import FINAL

from pmsq.models.migrate import upgrade

#: Judges timing (limits as the PMS sees them, a link cut mid-run):
#: `make test` runs this module alone, after the rest.
pytestmark = pytest.mark.alone

#: Hosts running a worker each (0, 1, 2).
HOSTS = 3
#: The host whose link is cut.
CUT_HOST = 0
#: The host the API runs on, and the one beat runs on: machines of their own, too.
API_HOST = HOSTS
BEAT_HOST = HOSTS + 1


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    reason = why_impossible()
    if reason is not None:
        pytest.skip(reason)
    with Hosts(HOSTS + 2) as made:
        yield made


@pytest.fixture(scope="module")
def hosts_stack(
    hosts: Hosts, redis_server: RedisServer, postgres_server: PostgresServer
) -> Iterator[HostsStack]:
    """The stack with a worker on every host, on a Redis and a PostgreSQL of its own that
    listen on the bridge. (`redis_server` and `postgres_server` only prove the servers are
    installed, or skip, as for every e2e test.)"""
    also_on = [hosts.server_interface]
    with RedisServer(also_on=also_on) as redis, PostgresServer(also_on=also_on) as postgres:
        database_url = hosts.bridged(postgres.create_database("pmsq_hosts"))
        upgrade(database_url)
        with running_hosts_stack(
            hosts, database_url, hosts.bridged(redis.url), api_host=API_HOST
        ) as stack:
            stack.start_workers(range(HOSTS))
            yield stack


def submit(stack: HostsStack, headers: dict[str, str], integration_id: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        body = {"integration_id": integration_id, "last_name": f"H{i:03d}"}
        response = stack.write(headers, "residents", body)
        assert response.status_code == 200, response.text
        ids.append(response.json()["job_id"])
    return ids


def all_final(stack: HostsStack, headers: dict[str, str], ids: list[str]) -> bool:
    return all(stack.status(headers, j).json().get("write_status") in FINAL for j in ids)


def starts(requests: list[dict[str, Any]]) -> list[float]:
    return [r["started_at"] for r in requests]


def test_hosts_share_the_work_exactly_once_within_the_limits(hosts_stack: HostsStack) -> None:
    stack, rate_per_s, cap, writes = hosts_stack, 5, 2, 30
    headers = stack.token("acme")
    tenant = f"hs{uuid.uuid4().hex[:10]}"
    integration_id = stack.integration(
        headers, "SANDBOX", tenant, max_request_frequency=rate_per_s, max_job_concurrency=cap
    )
    # Longer than the rate's spacing, so the cap binds as well as the rate.
    stack.fault(tenant=tenant, kind="latency", latency_ms=400)
    ids = submit(stack, headers, integration_id, writes)
    wait_until(
        lambda: all_final(stack, headers, ids), 120, 0.5, message="every write final",
        details=stack.logs,
    )  # fmt: skip
    assert {stack.status(headers, j).json()["write_status"] for j in ids} == {"SUCCESS"}

    names = sorted(r["last_name"] for r in stack.sandbox_records(tenant, "residents"))
    assert names == [f"H{i:03d}" for i in range(writes)]
    requests = stack.sandbox_requests(tenant)
    assert len(requests) == writes, requests
    assert max_in_window(starts(requests), 1.0) <= rate_per_s
    assert max_in_flight(requests) <= cap
    # Every host took part: the limits above held across separate hosts, not within one.
    senders = {r["client"] for r in requests}
    assert senders == {stack.hosts.address(h) for h in range(HOSTS)}, senders


def unfinished_tasks(worker_log: str) -> set[str]:
    """Ids of the tasks a worker's log shows received and not yet ended."""
    received = set(re.findall(r"Task pmsq\.run_job\[([0-9a-f-]+)\] received", worker_log))
    ended = set(re.findall(r"Task pmsq\.run_job\[([0-9a-f-]+)\] (?:succeeded|raised)", worker_log))
    return received - ended


def test_a_host_cut_off_mid_run_loses_doubles_and_resends_nothing(
    hosts_stack: HostsStack,
) -> None:
    stack, hosts, rate_per_s, cap, writes = hosts_stack, hosts_stack.hosts, 10, 4, 24
    cut_address = hosts.address(CUT_HOST)
    headers = stack.token("acme")
    tenant = f"hc{uuid.uuid4().hex[:10]}"
    integration_id = stack.integration(
        headers, "SANDBOX", tenant, max_request_frequency=rate_per_s, max_job_concurrency=cap
    )
    # Each answer takes long enough that the cut lands while the host has requests in flight.
    stack.fault(tenant=tenant, kind="latency", latency_ms=1500)
    ids = submit(stack, headers, integration_id, writes)

    def in_flight_from_cut_host() -> list[dict[str, Any]]:
        return [
            r
            for r in stack.sandbox_requests(tenant)
            if r["client"] == cut_address and r["ended_at"] is None
        ]

    wait_until(
        in_flight_from_cut_host, 60, 0.05, message="the host to cut has a request in flight",
        details=stack.logs,
    )  # fmt: skip
    [cut_worker] = stack.workers_on(CUT_HOST)
    hosts.cut(CUT_HOST)
    cut_at = time.time()
    held_tasks = unfinished_tasks(cut_worker.log_text())
    assert held_tasks, "the host was cut holding no task"
    try:
        held = {
            r["idempotency_key"]
            for r in stack.sandbox_requests(tenant)
            if r["client"] == cut_address and (r["ended_at"] is None or r["ended_at"] > cut_at)
        }
        assert held
        # The other hosts finish every write while the cut-off one is gone.
        wait_until(
            lambda: all_final(stack, headers, ids), 120, 0.5,
            message="every write final with a host cut off", details=stack.logs,
        )  # fmt: skip
        finished_at = time.time()
        before_restore = stack.sandbox_requests(tenant)
    finally:
        hosts.restore(CUT_HOST)
    assert {stack.status(headers, j).json()["write_status"] for j in ids} == {"SUCCESS"}
    names = sorted(r["last_name"] for r in stack.sandbox_records(tenant, "residents"))
    assert names == [f"H{i:03d}" for i in range(writes)]
    assert max_in_window(starts(before_restore), 1.0) <= rate_per_s
    assert max_in_flight(before_restore) <= cap
    resent = [
        r for r in before_restore if r["idempotency_key"] in held and r["started_at"] > cut_at
    ]
    assert {r["idempotency_key"] for r in resent} == held, "a held job never ran elsewhere"

    # Back online, the cut-off host finishes every task it held (each one finds its job's
    # lease handed on: it stops before sending, or its outcome is refused at record) and sends
    # nothing.
    wait_until(
        lambda: not held_tasks & unfinished_tasks(cut_worker.log_text()), 90, 0.5,
        message="the cut-off host finishes the tasks it held", details=stack.logs,
    )  # fmt: skip
    after = stack.sandbox_requests(tenant)[len(before_restore) :]
    assert after == [], after
    assert cut_worker.is_running(), cut_worker.log_tail()

    first_resent = min(r["started_at"] for r in resent)
    print(
        f"\nhost cut off holding {len(held)} requests: its jobs resent elsewhere from "
        f"{first_resent - cut_at:.2f}s after the cut; every write final "
        f"{finished_at - cut_at:.2f}s after it; requests {len(before_restore)} for {writes} "
        f"writes; most in 1s window {max_in_window(starts(before_restore), 1.0)} "
        f"(limit {rate_per_s}), most in flight {max_in_flight(before_restore)} (cap {cap})"
    )


def test_beat_on_its_own_host_fires_syncs_that_workers_on_other_hosts_run(
    hosts_stack: HostsStack,
) -> None:
    """Last in the module: beat runs from here on (an integration the other tests make gets
    no sync from it while they run)."""
    stack = hosts_stack
    headers = stack.token("acme")
    tenant = f"hb{uuid.uuid4().hex[:10]}"
    integration_id = stack.integration(
        headers, "SANDBOX", tenant, sync_frequency=2, sync_cadence="SECOND"
    )
    stack.start_beat_on(BEAT_HOST)
    url = f"{stack.api_url}/v1/admin/integrations/{integration_id}/sync-status"

    def scheduled_sync_ended() -> dict[str, Any] | None:
        last = stack.http.get(url, headers=headers).json()["data"].get("last_execution")
        if last and last["type"] == "scheduled" and last["status"] in ("completed", "failed"):
            return dict(last)
        return None

    last = wait_until(
        scheduled_sync_ended, 90, 0.5, message="a scheduled sync ended", details=stack.logs
    )
    assert last["status"] == "completed", last
    # The sync's reads reached the PMS from the worker hosts: beat only fired it.
    senders = {r["client"] for r in stack.sandbox_requests(tenant)}
    assert senders and senders <= {stack.hosts.address(h) for h in range(HOSTS)}, senders

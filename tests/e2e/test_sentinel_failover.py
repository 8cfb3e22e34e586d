"""A stack on Redis Sentinel survives SIGKILL of the master mid-run.

The API, two workers (two processes each) and the broker all reach Redis through three
sentinels (`PMSQ_REDIS_URL=sentinel://...`, `PMSQ_REDIS_SENTINEL_MASTER`); the master is killed
while writes run, the sentinels promote the replica, and every process follows without a
restart: no worker may exit on its lost broker connection (see `wait_all_final`). The
sandbox judges:
every write's record exists exactly once, and the rate and concurrency limits hold from the
failover on. What happens in the failover's own seconds (a burst, the pause, restarts) is
printed (`-s`) and written down in bench/RESULTS.md, not asserted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.judge import max_in_flight, max_in_window
from support.processes import wait_until
from support.services import RedisSentinelGroup, RedisServer
from support.stack import FINAL, Stack

#: Judges timing (limits across a failover, as the PMS sees them):
#: `make test` runs this module alone, after the rest.
pytestmark = pytest.mark.alone

#: Broker and flow control share this database of the Sentinel-managed Redis.
REDIS_DB = 0
WRITES = 40
RATE_PER_S = 5
CONCURRENCY = 2
#: Every request takes this long at the sandbox: longer than the rate's spacing, so the
#: concurrency cap binds too.
LATENCY_MS = 600


@pytest.fixture(scope="module")
def sentinel_stack(
    database_url: str, redis_server: RedisServer
) -> Iterator[tuple[Stack, RedisSentinelGroup]]:
    """`redis_server` only proves redis-server is installed (or skips, as every e2e test)."""
    with RedisSentinelGroup() as group:
        stack = Stack(
            database_url,
            group.url(REDIS_DB),
            env={"PMSQ_REDIS_SENTINEL_MASTER": group.master_name},
        )
        try:
            stack.start()
            stack.start_worker(concurrency=2)
            yield stack, group
        finally:
            stack.stop()


def submit(stack: Stack, headers: dict[str, str], integration_id: str) -> list[str]:
    ids = []
    for i in range(WRITES):
        body = {"integration_id": integration_id, "last_name": f"F{i:03d}"}
        response = stack.write(headers, "residents", body)
        assert response.status_code == 200, response.text
        ids.append(response.json()["job_id"])
    return ids


def wait_all_final(stack: Stack, headers: dict[str, str], ids: list[str]) -> None:
    """Wait until every write is final; fail as soon as a worker has exited.

    kombu's Redis transport, closing a connection that dropped while a late-acked message
    was unacknowledged, cannot restore that message and raises AttributeError, which ends the
    worker ("Unrecoverable error"), unless its ack emulation is off
    (`pmsq.redis_client.broker_transport_options`)."""

    def final() -> bool:
        exited = [w for w in stack.workers if not w.is_running()]
        assert not exited, "\n".join(w.describe() for w in exited)
        return all(stack.status(headers, j).json().get("write_status") in FINAL for j in ids)

    wait_until(final, 180, 0.5, message="every write final", details=stack.logs)


def starts(requests: list[dict[str, Any]]) -> list[float]:
    return [r["started_at"] for r in requests]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="module")
def test_writes_survive_a_sigkilled_master_exactly_once_within_limits(
    sentinel_stack: tuple[Stack, RedisSentinelGroup],
) -> None:
    stack, group = sentinel_stack
    assert group.primary.process is not None and group.replica is not None
    headers = stack.token("acme")
    tenant = f"fo{uuid.uuid4().hex[:10]}"
    integration_id = stack.integration(
        headers,
        "SANDBOX",
        tenant,
        max_request_frequency=RATE_PER_S,
        max_job_concurrency=CONCURRENCY,
    )
    stack.fault(tenant=tenant, kind="latency", latency_ms=LATENCY_MS)
    ids = submit(stack, headers, integration_id)
    wait_until(
        lambda: len(stack.sandbox_requests(tenant)) >= WRITES // 4,
        60,
        message="a quarter of the writes reach the PMS",
        details=stack.logs,
    )

    killed_at = time.time()
    group.primary.process.kill()  # SIGKILL, mid-run
    wait_until(
        lambda: group.master_port() == group.replica.port,
        60,
        0.1,
        message="the sentinels promote the replica",
    )
    promoted_at = time.time()
    wait_all_final(stack, headers, ids)
    assert {stack.status(headers, j).json()["write_status"] for j in ids} == {"SUCCESS"}

    # Nothing lost, nothing doubled: one record per write, each exactly once.
    names = sorted(r["last_name"] for r in stack.sandbox_records(tenant, "residents"))
    assert names == [f"F{i:03d}" for i in range(WRITES)]

    requests = stack.sandbox_requests(tenant)
    after = [r for r in requests if r["started_at"] >= promoted_at]
    assert after, "writes were still running when the replica was promoted"
    # The limits hold from the promotion on, across every worker process.
    assert max_in_window(starts(after), 1.0) <= RATE_PER_S
    assert max_in_flight(after) <= CONCURRENCY

    assert all(w.is_running() for w in stack.workers), stack.logs()

    # Measured, not asserted: the whole run's peaks and the pause the failover caused.
    later = sorted(s for s in starts(requests) if s > killed_at)
    before = sorted(s for s in starts(requests) if s <= killed_at)
    print(
        f"\nfailover: promoted {promoted_at - killed_at:.2f}s after SIGKILL; "
        f"PMS pause {later[0] - before[-1]:.2f}s (last request before the kill to first after);"
        f" whole run: most in 1s window {max_in_window(starts(requests), 1.0)} "
        f"(limit {RATE_PER_S}), most in flight {max_in_flight(requests)} "
        f"(cap {CONCURRENCY}); requests {len(requests)} for {WRITES} writes"
    )

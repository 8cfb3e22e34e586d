"""Flow control on Redis Sentinel: a process follows a failover without a restart, and every
Lua script runs on a new master (Redis does not replicate its script cache)."""

from __future__ import annotations

import hashlib
from importlib import resources

import redis
from support.processes import wait_until
from support.services import RedisSentinelGroup

from pmsq.models.enums import Cadence
from pmsq.redis_client import connect
from pmsq.scheduler.leader import LeaderLease
from pmsq.workers.flow.backend import Pace
from pmsq.workers.flow.keys import READY, IntegrationKeys
from pmsq.workers.flow.limits import Limits
from pmsq.workers.flow.redis_backend import RedisFlowControl

LIMITS = Limits.from_values(1000, Cadence.SECOND, 2, margin_ms=0)


def every_script_runs(client: redis.Redis, integration_id: str) -> None:
    """Calls each script-backed path of flow control and beat's leader lease once."""
    flow = RedisFlowControl(client)
    flow.set_limits(integration_id, LIMITS)
    flow.enqueue(integration_id, ["late"], delay_s=60)  # pipelined EVALSHA, with delay
    flow.enqueue_many({integration_id: ["j1", "j2"]})  # pipelined EVALSHA
    due = flow.claim_due(10, claim_s=5)
    assert integration_id in due.integration_ids
    admitted = flow.admit(integration_id, max_jobs=2, lease_s=5)
    assert admitted.status == "ok" and set(admitted.job_ids) == {"j1", "j2"}
    flow.reschedule(integration_id, due.claim_us, admitted.next_us)
    assert flow.hold(integration_id, "j1", 1, lease_s=5).held
    assert flow.renew(integration_id, "j1", 1, lease_s=5).held
    paced = flow.pace(integration_id, "j1", 1)
    assert paced.decision is Pace.GO and paced.slot is not None
    assert flow.give_back(integration_id, paced.slot)
    assert not flow.reclaim(integration_id, "j1", 1)  # its lease is live
    assert flow.release(integration_id, "j1:1") == 1  # "late" is left
    assert not flow.enqueue_orphan(integration_id, "j2")  # admitted, lease live
    assert flow.pause(integration_id, 0.01) > 0
    lease = LeaderLease(client, "beat-a", ttl_s=5)
    assert lease.hold()
    lease.release()


def flow_script_shas() -> list[str]:
    files = resources.files("pmsq.workers.flow").iterdir()
    return [
        hashlib.sha1(f.read_bytes()).hexdigest()  # Redis names a script by its SHA-1
        for f in files
        if f.name.endswith(".lua")
    ]


def scripts_cached(port: int) -> list[bool]:
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        return [bool(b) for b in client.script_exists(*flow_script_shas())]
    finally:
        client.close()


def test_every_script_call_path_reloads_a_flushed_script_cache(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    every_script_runs(client, "i1")
    client.script_flush()
    every_script_runs(client, "i2")
    client.close()


def test_flow_control_follows_a_sentinel_failover(
    redis_sentinel_group: RedisSentinelGroup,
) -> None:
    group = redis_sentinel_group
    assert group.replica is not None and group.replica.port is not None
    assert group.primary.port is not None
    client = connect(group.url(), sentinel_master=group.master_name)
    flow = RedisFlowControl(client)
    every_script_runs(client, "before")
    flow.enqueue("kept", ["k1"])
    client.execute_command("WAIT", 1, 5000)  # the replica has everything so far
    # The replica holds the data but none of the scripts the master ran.
    assert scripts_cached(group.primary.port) == [True] * len(flow_script_shas())
    assert scripts_cached(group.replica.port) == [False] * len(flow_script_shas())

    assert group.primary.process is not None
    group.primary.process.kill()  # SIGKILL
    wait_until(
        lambda: group.master_port() == group.replica.port, 60, 0.2, message="sentinels fail over"
    )

    # The same client, never rebuilt, now talks to the new master: data and every script.
    assert flow.in_backlog("kept", ["k1"]) == [True]
    assert client.zscore(READY, "kept") is not None
    every_script_runs(client, "after")
    assert client.exists(IntegrationKeys("after").limits)
    client.close()

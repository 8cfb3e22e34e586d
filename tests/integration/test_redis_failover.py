"""Flow control on Redis Sentinel: a process follows a failover without a restart, and every
Lua script runs on a new master (Redis does not replicate its script cache)."""

from __future__ import annotations

import hashlib
from importlib import resources

import redis
from support.flow_paths import every_script_runs
from support.processes import wait_until
from support.services import RedisSentinelGroup

from pmsq.redis_client import connect
from pmsq.workers.flow.keys import READY, IntegrationKeys
from pmsq.workers.flow.redis_backend import RedisFlowControl


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

"""Flow control on a Redis Cluster: integrations on every primary, every Lua script, the
pipelines that span slots, metrics and gauges, all through one `redis+cluster://` client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster
from support.flow_paths import every_script_runs
from support.services import RedisClusterGroup

from pmsq.metrics import ClusterCollector, MetricsRecorder
from pmsq.redis_client import connect
from pmsq.workers.flow.gauges import FlowGauges
from pmsq.workers.flow.keys import READY, IntegrationKeys
from pmsq.workers.flow.redis_backend import RedisFlowControl

#: Enough integration ids that their hash tags land on every primary (checked below).
INTEGRATIONS = [f"int{n}" for n in range(12)]


@pytest.fixture
def client(redis_cluster: RedisClusterGroup) -> Iterator[redis.Redis]:
    client = connect(redis_cluster.url)
    client.flushdb()
    yield client
    client.close()


def primary_of(client: redis.Redis, integration_id: str) -> str:
    assert isinstance(client, RedisCluster)
    return str(client.get_node_from_key(IntegrationKeys(integration_id).backlog).name)


def test_a_cluster_url_builds_a_cluster_client(client: redis.Redis) -> None:
    assert isinstance(client, RedisCluster)
    assert len({primary_of(client, i) for i in INTEGRATIONS}) == 3


def test_every_script_runs_for_integrations_on_every_primary(client: redis.Redis) -> None:
    for integration_id in INTEGRATIONS:
        every_script_runs(client, integration_id)
    flow = RedisFlowControl(client)
    assert flow.known_integrations() == sorted(INTEGRATIONS)
    # Each still has its delayed job waiting, in the one ready set (its own slot).
    assert flow.in_backlog("int0", ["late", "j1"]) == [True, False]
    assert flow.usage("int0").backlog == 1


def test_scripts_come_back_after_every_node_flushed_its_script_cache(client: redis.Redis) -> None:
    every_script_runs(client, "int1")
    client.script_flush()  # on every primary
    every_script_runs(client, "int2")
    every_script_runs(client, "int3")


def test_the_healing_paths_span_slots_without_a_cross_slot_command(client: redis.Redis) -> None:
    flow = RedisFlowControl(client)
    flow.enqueue_many({i: [f"{i}-a", f"{i}-b"] for i in INTEGRATIONS})  # one pipeline
    client.delete(READY)  # the ready set lost (its node failed over without it, say)
    assert flow.repair_ready() == len(INTEGRATIONS)
    assert client.zcard(READY) == len(INTEGRATIONS)
    assert flow.limits_versions(INTEGRATIONS) == [None] * len(INTEGRATIONS)
    assert flow.enqueue_orphan("int4", "orphan")
    flow.record_pms_limits("int6", {"X-RateLimit-Limit": "10"})
    assert flow.usage("int6").pms_reported == {"X-RateLimit-Limit": "10"}


def test_metrics_and_gauges_read_the_whole_cluster(client: redis.Redis) -> None:
    flow = RedisFlowControl(client)
    flow.enqueue_many({i: ["x"] for i in INTEGRATIONS})
    recorder = MetricsRecorder(client)
    recorder.count("pmsq_admissions", integration_id="int0")
    recorder.observe("pmsq_job_duration_seconds", 0.2)
    recorder.flush()  # one pipeline over the cluster: the two hashes may live on two nodes
    backlog = next(iter(FlowGauges(client).collect()))
    assert {s.labels["integration_id"]: s.value for s in backlog.samples} == dict.fromkeys(
        INTEGRATIONS, 1
    )
    names = {s.name for family in ClusterCollector(client).collect() for s in family.samples}
    assert "pmsq_admissions_total" in names and "pmsq_job_duration_seconds_count" in names

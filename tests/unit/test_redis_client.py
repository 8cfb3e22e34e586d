"""Which Redis client each form of PMSQ_REDIS_URL builds, and what Celery is told."""

from __future__ import annotations

import pytest
import redis

from pmsq.errors import ConfigurationError
from pmsq.redis_client import (
    SENTINEL_SOCKET_TIMEOUT_S,
    broker_transport_options,
    connect,
    flow_redis,
    parse_cluster_url,
    parse_sentinel_url,
)
from pmsq.settings import Settings

SENTINELS = "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://10.0.0.2:26380;sentinel://h3:26381"


def test_a_plain_url_builds_a_plain_client() -> None:
    client = connect("redis://127.0.0.1:6390/3")
    assert client.connection_pool.connection_kwargs["port"] == 6390
    assert client.connection_pool.connection_kwargs["db"] == 3


def test_a_sentinel_url_names_every_sentinel_and_the_masters_options() -> None:
    sentinels, kwargs = parse_sentinel_url(SENTINELS)
    assert sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("h3", 26381)]
    assert kwargs["password"] == "s3cret" and kwargs["db"] == 2
    assert kwargs["socket_timeout"] == SENTINEL_SOCKET_TIMEOUT_S


def test_a_sentinel_urls_own_socket_timeout_wins() -> None:
    _, kwargs = parse_sentinel_url("sentinel://h1:26379/0?socket_timeout=0.5")
    assert kwargs["socket_timeout"] == 0.5


def test_a_sentinel_url_builds_a_master_client_without_connecting() -> None:
    client = flow_redis(Settings(redis_url=SENTINELS, redis_sentinel_master="main"))
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "main" and pool.is_master


def test_a_sentinel_url_without_a_master_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="PMSQ_REDIS_SENTINEL_MASTER"):
        flow_redis(Settings(redis_url=SENTINELS))


@pytest.mark.parametrize(
    "url", ["sentinel://:s3cret@h1:26379;redis://:s3cret@h2:6379", "sentinel://:s3cret@h1/0"]
)
def test_a_malformed_sentinel_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_sentinel_url(url)
    assert "s3cret" not in str(refused.value)


def test_celery_gets_the_master_name_for_a_sentinel_broker_only() -> None:
    sentinel = Settings(redis_url=SENTINELS, redis_sentinel_master="main")
    assert broker_transport_options(sentinel)["master_name"] == "main"
    rabbit = Settings(
        redis_url=SENTINELS, redis_sentinel_master="main", broker_url="amqp://mq:5672//"
    )
    assert "master_name" not in broker_transport_options(rabbit)
    assert broker_transport_options(Settings())["visibility_timeout"] == 3600


def test_the_broker_runs_without_ack_emulation() -> None:
    """With it, a worker whose broker connection drops holding a message exits (kombu)."""
    assert broker_transport_options(Settings())["ack_emulation"] is False


def test_a_cluster_url_names_its_startup_nodes_and_options() -> None:
    nodes, kwargs = parse_cluster_url(
        "redis+cluster://:s3cret@h1:7000,10.0.0.2:7001/?socket_timeout=2"
    )
    assert [(n.host, n.port) for n in nodes] == [("h1", 7000), ("10.0.0.2", 7001)]
    assert kwargs == {"password": "s3cret", "socket_timeout": 2.0}


def test_a_malformed_cluster_url_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_cluster_url("redis+cluster://:s3cret@h1:7000,h2")
    assert "node 2" in str(refused.value) and "s3cret" not in str(refused.value)


def test_a_cluster_is_refused_as_the_broker() -> None:
    with pytest.raises(ValueError, match="PMSQ_BROKER_URL"):
        Settings(redis_url="redis+cluster://h1:7000")
    settings = Settings(redis_url="redis+cluster://h1:7000", broker_url="redis://mq:6379/0")
    assert settings.celery_broker_url == "redis://mq:6379/0"

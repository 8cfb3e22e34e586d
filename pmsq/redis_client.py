"""The one place a process builds its flow-control Redis client from the settings.

`PMSQ_REDIS_URL` takes what a Celery user already writes for the broker:

- `redis://`, `rediss://`, `unix://`: one Redis server (redis-py's own URL syntax).
- `sentinel://[:password@]host:port[/db][;sentinel://host:port;...]` with
  `PMSQ_REDIS_SENTINEL_MASTER`: Redis Sentinel, in kombu's syntax, so the same string serves as
  the Celery broker URL. Every `sentinel://` part names one sentinel; the password, the database
  and any query options (`socket_timeout=...`) of the first part apply to the master, as kombu
  does; the sentinels themselves are asked without a password.
- `redis+cluster://[:password@]host:port[,host:port...][?options]`: Redis Cluster, through
  redis-py's `RedisCluster`; the nodes named are where it starts discovering the cluster. Every
  Lua script touches the keys of one integration (one hash tag, one slot) or only the global
  ready set, so none is cross-slot. Celery cannot use a cluster as its broker:
  `PMSQ_BROKER_URL` must then name another Redis (or RabbitMQ).

A Sentinel client asks the sentinels for the master's address on every new connection, and
redis-py drops its pooled connections when that address changes (or when the old master
answers READONLY, demoted), so a process follows a failover without a restart; commands that
fail meanwhile are retried by redis-py's default retry policy, then surface as the connection
errors every caller already handles. Lua scripts are not replicated, so a new master knows
none: every script call goes through redis-py's `Script` (which loads it on NOSCRIPT) or
reloads it itself (`RedisFlowControl._execute_with_scripts`).
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.sentinel import Sentinel

from pmsq.errors import ConfigurationError
from pmsq.settings import Settings

#: URL scheme of one sentinel, as kombu writes it.
SENTINEL_SCHEME = "sentinel://"
#: URL scheme of a Redis Cluster (`pmsq.settings` refuses it as the broker).
CLUSTER_SCHEME = "redis+cluster://"
#: Socket timeouts of a Sentinel-managed client unless its URL sets them: a master that died
#: without closing its sockets (its host gone) must fail calls, not hang them past a lease.
SENTINEL_SOCKET_TIMEOUT_S = 5.0


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def flow_redis(settings: Settings) -> redis.Redis:
    """The client for flow control, metrics and beat's leader lease; the caller closes it.

    Raises `ConfigurationError` for a Sentinel URL without `PMSQ_REDIS_SENTINEL_MASTER`.
    """
    return connect(settings.redis_url, sentinel_master=settings.redis_sentinel_master)


def connect(url: str, *, sentinel_master: str | None = None) -> redis.Redis:
    """A client for `url` (see the module docstring for the forms it takes)."""
    if is_cluster_url(url):
        startup_nodes, cluster_kwargs = parse_cluster_url(url)
        # RedisCluster is no redis.Redis subclass but serves every command pmsq sends (checked
        # on a real cluster by the tests); callers are typed for redis.Redis.
        return cast(redis.Redis, RedisCluster(startup_nodes=startup_nodes, **cluster_kwargs))
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url)
    if not sentinel_master:
        raise ConfigurationError(
            "a sentinel:// Redis URL needs PMSQ_REDIS_SENTINEL_MASTER (the master's name)"
        )
    sentinels, connection_kwargs = parse_sentinel_url(url)
    sentinel = Sentinel(sentinels, **connection_kwargs)  # type: ignore[no-untyped-call]
    master = sentinel.master_for(sentinel_master)  # type: ignore[no-untyped-call]
    return cast(redis.Redis, master)


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The sentinels' addresses and the master's connection options of a kombu Sentinel URL.

    Raises `ConfigurationError` naming the part that is not a `sentinel://host:port` (never
    the URL itself, which may hold a password)."""
    sentinels: list[tuple[str, int]] = []
    master_kwargs: dict[str, Any] = {}
    for n, part in enumerate(p.strip() for p in url.split(";")):
        if not part:
            continue
        if not is_sentinel_url(part):
            raise ConfigurationError(f"part {n + 1} of the Sentinel URL is not sentinel://")
        try:
            kwargs = parse_url("redis://" + part[len(SENTINEL_SCHEME) :])  # type: ignore[no-untyped-call]
        except ValueError:
            raise ConfigurationError(f"part {n + 1} of the Sentinel URL is malformed") from None
        host, port = kwargs.pop("host", None), kwargs.pop("port", None)
        if not host or not port:
            raise ConfigurationError(f"part {n + 1} of the Sentinel URL needs a host and port")
        sentinels.append((host, port))
        if n == 0:
            master_kwargs = kwargs
    master_kwargs.setdefault("socket_timeout", SENTINEL_SOCKET_TIMEOUT_S)
    master_kwargs.setdefault("socket_connect_timeout", SENTINEL_SOCKET_TIMEOUT_S)
    return sentinels, master_kwargs


def parse_cluster_url(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """The startup nodes and the connection options of a `redis+cluster://` URL.

    Raises `ConfigurationError` naming the node that is not `host:port` (never the URL, which
    may hold a password)."""
    rest = url[len(CLUSTER_SCHEME) :]
    rest, _, query = rest.partition("?")
    rest = rest.rstrip("/")
    userinfo, _, hosts = rest.rpartition("@")
    nodes: list[ClusterNode] = []
    for n, address in enumerate(h.strip() for h in hosts.split(",")):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"node {n + 1} of the cluster URL is not host:port")
        nodes.append(ClusterNode(host, int(port)))  # type: ignore[no-untyped-call]
    options = "redis://" + (userinfo + "@" if userinfo else "") + "localhost"
    kwargs = parse_url(options + ("?" + query if query else ""))  # type: ignore[no-untyped-call]
    kwargs.pop("host", None)
    return nodes, kwargs


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """Celery's `broker_transport_options`: kombu needs the master's name for a Sentinel
    broker (`master_name`); the visibility timeout is pmsq's own.

    Ack emulation (kombu's copy of every delivered message in an `unacked` hash, put back
    after the visibility timeout or when the connection closes) is off. With it on, a worker
    whose broker connection drops while a job's message is unacknowledged exits: kombu closes
    the dropped connection twice and the second close, restoring that message, fails with
    AttributeError ("Unrecoverable error"), as a Sentinel master's death showed. pmsq never
    relies on the broker to redeliver: a job whose worker died resumes from the job store
    within a lease (its claim's or its admission's), and a late duplicate is dropped at claim.
    A message is still handed back when its pool process dies (`reject_on_worker_lost`) or
    its worker stops warm."""
    options: dict[str, Any] = {"visibility_timeout": 3600, "ack_emulation": False}
    if is_sentinel_url(settings.celery_broker_url) and settings.redis_sentinel_master:
        options["master_name"] = settings.redis_sentinel_master
    return options

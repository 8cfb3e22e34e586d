"""Every setting of pmsq, read once from `PMSQ_*` environment variables.

Processes build one `Settings` at start-up (`Settings()`), then pass it, or what they derive
from it, to whatever needs it; nothing reads the environment later.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import ip_network

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Development-only Fernet key, used when PMSQ_SECRET_KEYS is unset so `make demo` works
#: out of the box. Production deployments must set their own.
DEV_SECRET_KEY = "cG1zcS1kZXZlbG9wbWVudC1rZXktZG8tbm90LXVzZSE="


class Settings(BaseSettings):
    """pmsq configuration; each field is the env var `PMSQ_<FIELD>` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="PMSQ_", extra="ignore")

    #: SQLAlchemy URL of the job store. SQLite serves one host; PostgreSQL (psycopg 3) many.
    database_url: str = "sqlite:///./pmsq.db"
    #: Redis holding flow-control state (backlogs, leases, tokens, pauses): `redis://...` for
    #: one server, or kombu's `sentinel://host:port;sentinel://host:port` for Redis Sentinel
    #: (with `redis_sentinel_master`), or `redis+cluster://host:port,host:port` for Redis Cluster
    #: (then `broker_url` is required); `pmsq.redis_client` builds the client.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Name of the Sentinel-monitored master when `redis_url` (or `broker_url`) is a
    #: `sentinel://` URL; Celery gets it as the broker's `master_name` transport option.
    redis_sentinel_master: str | None = None
    #: Celery broker; defaults to `redis_url` so a RabbitMQ shop can point it elsewhere.
    broker_url: str | None = None
    #: Comma-separated Fernet keys, newest first; credentials are encrypted with the first and
    #: decrypted with any (MultiFernet), so keys rotate without downtime.
    secret_keys: SecretStr = SecretStr(DEV_SECRET_KEY)

    #: Attempts a job gets for retryable PMS errors (5xx, timeouts) before it fails.
    max_attempts: int = Field(default=4, ge=1)
    #: First retry delay; doubles each attempt, with equal jitter, capped at `retry_max_s`.
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    #: A job still throttled (PMS 429) this long after its write was accepted fails with a
    #: clear error instead of waiting forever (429s burn no attempt).
    max_throttled_s: float = Field(default=3600.0, gt=0)
    #: Broker deliveries a job may take without finishing before it fails as a poison message.
    max_deliveries: int = Field(default=5, ge=1)
    #: Largest number of jobs one write tree may hold; spawning past it fails the spawning job.
    max_jobs_per_tree: int = Field(default=10_000, ge=1)
    #: Timeout of one PMS HTTP request.
    pms_timeout_s: float = Field(default=10.0, gt=0)
    #: Lease of an admitted job (its concurrency slot and its RUNNING claim), on Redis's clock.
    #: A live worker renews it every third of it; a worker that dies or freezes loses it, and
    #: the slot and the job come back within about this time (a job admitted but never
    #: claimed, its message lost with a worker, too). A worker that lost it sends nothing more.
    job_lease_s: float = Field(default=10.0, gt=0)
    #: Longest sleep of the dispatcher loop (it wakes sooner when an admission is due).
    dispatch_interval_s: float = Field(default=0.2, gt=0)
    #: Period of the healing passes (expired leases, lost messages, jobs missing from Redis).
    maintenance_interval_s: float = Field(default=2.0, gt=0)
    #: Each rate window is stretched by this much: no window of one cadence unit at the PMS
    #: holds more than the limit as long as the delay from the pacing decision (on Redis) to a
    #: request's arrival at the PMS varies by less than this. Half of it bounds how much later than
    #: the fastest a pacing pass may come back (a later one is stale and given back); half
    #: covers worker -> PMS jitter.
    rate_margin_ms: float = Field(default=20.0, ge=0)
    #: `pmsq api` migrates the database to the latest schema at start (one-host setups);
    #: multi-host deployments run `pmsq migrate` once and turn this off.
    auto_migrate: bool = True
    #: Beat leader lease: another beat takes over within this after the leader dies.
    beat_leader_ttl_s: float = Field(default=3.0, gt=0)
    #: Port on which a worker serves the cluster's Prometheus metrics (0: off; the API's
    #: /metrics serves the same figures).
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    #: Longest time a process keeps recorded metric events in memory before it adds them to
    #: the Redis-held figures in one round trip (a killed process loses at most this much).
    metrics_flush_s: float = Field(default=1.0, gt=0)
    #: Log format of pmsq's own loggers: "text", or "json" (one object a line, with job_id,
    #: root_job_id and integration_id where known).
    log_format: str = Field(default="text", pattern="^(text|json)$")
    #: Largest accepted write body.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    #: How long a write's Idempotency-Key replays its first answer; a repeat after this is a
    #: new write, and the key is purged.
    idempotency_ttl_s: float = Field(default=86_400.0, gt=0)
    #: Days a finished write tree (its jobs and job logs), a finished sync execution and a
    #: finished webhook delivery are kept before beat purges them.
    retention_days: float = Field(default=30.0, gt=0)
    #: Celery queue that job tasks are published to.
    job_queue: str = "pmsq.jobs"
    #: Workers send Celery task events (one Redis PUBLISH each) from the start, and publishers
    #: `task-sent` events. Off by default: a worker sends task events once a monitor asks for
    #: them (Flower broadcasts `enable_events` every 5 s; `celery control enable_events` does
    #: the same), and keeps sending them until it restarts or is told `disable_events`.
    task_events: bool = False

    # -- outbound requests ---------------------------------------------------------------------
    #: Comma-separated CIDRs that PMS calls and webhooks may reach although they are not public
    #: (loopback, private, link-local, ...). Empty by default: accounts choose the URLs pmsq
    #: calls and read the answers, so no internal address is reachable unless the operator
    #: names it (`127.0.0.0/8` for a sandbox on the same host).
    allowed_outbound_networks: str = ""
    #: Comma-separated hostnames an integration of a vendor with fixed API hosts (Buildium) may
    #: use as `base_url` besides the vendor's own: sandboxes and tests.
    allowed_pms_hosts: str = ""

    # -- webhooks ------------------------------------------------------------------------------
    #: Timeout of one webhook POST (connect, read, write).
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    #: POSTs a delivery gets before it is recorded FAILURE.
    webhook_max_attempts: int = Field(default=8, ge=1)
    #: First retry delay of a failed delivery; doubles each attempt, jittered, capped.
    webhook_retry_base_s: float = Field(default=2.0, gt=0)
    webhook_retry_max_s: float = Field(default=600.0, gt=0)
    #: How long a claimed delivery is reserved for its sender; past it (the sender died) the
    #: delivery is due again. Must exceed `webhook_timeout_s`.
    webhook_claim_s: float = Field(default=30.0, gt=0)
    #: Most deliveries one dispatcher claims per maintenance pass.
    webhook_batch: int = Field(default=50, ge=1)

    @field_validator("allowed_outbound_networks")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ip_network(part.strip(), strict=False)  # ValueError names the bad one
        return value

    @model_validator(mode="after")
    def _broker_is_no_cluster(self) -> Settings:
        # Celery's Redis transport cannot use a Redis Cluster; `pmsq.redis_client` reads the
        # scheme for the flow-control client.
        if self.broker_url is None and self.redis_url.startswith("redis+cluster://"):
            raise ValueError(
                "PMSQ_BROKER_URL must be set when PMSQ_REDIS_URL is a Redis Cluster "
                "(Celery cannot use a cluster as its broker)"
            )
        return self

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def fernet_keys(self) -> list[str]:
        return [k.strip() for k in self.secret_keys.get_secret_value().split(",") if k.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()

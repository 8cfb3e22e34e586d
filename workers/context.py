"""Everything a worker process needs, built once per process from the settings.

Built lazily after fork (prefork pool children each build their own), so no database
connection or HTTP pool is ever shared across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import redis
from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pmsq.crypto import CredentialCipher
from pmsq.metrics import MetricsRecorder
from pmsq.models.db import make_engine, make_session_factory
from pmsq.outbound import DestinationPolicy, outbound_client, parse_hosts
from pmsq.redis_client import flow_redis
from pmsq.settings import Settings
from pmsq.workers.connectors import ConnectorFactory
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.healing import Healer
from pmsq.workers.publisher import CeleryPublisher, WriteTraces
from pmsq.workers.runner import JobRunner


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    http: httpx.Client
    redis: redis.Redis
    dispatcher: Dispatcher
    healer: Healer
    runner: JobRunner

    @classmethod
    def build(cls, settings: Settings, app: Celery) -> WorkerContext:
        engine = make_engine(settings.database_url)
        session_factory = make_session_factory(engine)
        # Every PMS call, read-back and sync page goes through this client, so through the
        # destination policy checked at connect time.
        policy = DestinationPolicy.from_settings(settings)
        http = outbound_client(policy, timeout_s=settings.pms_timeout_s, trace_as="PMS")
        redis_client = flow_redis(settings)
        flow = RedisFlowControl(redis_client)
        publisher = CeleryPublisher(app, settings.job_queue, WriteTraces(redis_client))
        metrics = MetricsRecorder(redis_client, flush_interval_s=settings.metrics_flush_s)
        dispatcher = Dispatcher(session_factory, publisher, flow, settings, metrics=metrics)
        connectors = ConnectorFactory(
            CredentialCipher(settings.fernet_keys), http, parse_hosts(settings.allowed_pms_hosts)
        )
        runner = JobRunner(session_factory, connectors, dispatcher, settings, metrics=metrics)
        healer = Healer(session_factory, dispatcher, settings)
        return cls(
            settings, engine, session_factory, http, redis_client, dispatcher, healer, runner
        )

    def close(self) -> None:
        self.http.close()
        self.redis.close()
        self.engine.dispose()

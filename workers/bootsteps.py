"""Worker bootsteps: loops on threads of the worker's main process.

`DispatcherLoop` admits due jobs (`pmsq.workers.dispatch`) and heals what lost workers, messages
or Redis data left behind (`pmsq.workers.healing`); `WebhookDeliveryLoop` sends due webhook
deliveries. Every worker runs both; row-locked transitions and atomic Lua decisions make that
safe, and it means no extra process is needed to admit due retries, reclaim the leases of killed
workers or deliver webhooks.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from celery import bootsteps
from prometheus_client import CollectorRegistry, start_http_server
from sqlalchemy import Engine

from pmsq.metrics import ClusterCollector, MetricsRecorder
from pmsq.models.db import make_engine, make_session_factory
from pmsq.redis_client import flow_redis
from pmsq.settings import get_settings
from pmsq.workers.flow.gauges import FlowGauges
from pmsq.workers.webhooks.deliverer import DeliveryLoop

logger = logging.getLogger(__name__)


class DispatcherLoop(bootsteps.StartStopStep):
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        from pmsq.workers.context import WorkerContext

        context = WorkerContext.build(get_settings(), parent.app)
        port = context.settings.worker_metrics_port
        if port:
            registry = CollectorRegistry(auto_describe=True)
            registry.register(ClusterCollector(context.redis))
            registry.register(FlowGauges(context.redis))
            start_http_server(port, addr=context.settings.worker_metrics_host, registry=registry)
        self._thread = threading.Thread(
            target=self._loop, args=(context,), name="pmsq-dispatcher", daemon=True
        )
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self, context: Any) -> None:
        try:
            next_heal_s = 0.0
            while not self._stop.is_set():
                try:
                    sleep_s = context.dispatcher.tick()
                except Exception:
                    logger.exception("dispatcher tick failed; retrying")
                    sleep_s = context.settings.dispatch_interval_s
                if time.monotonic() >= next_heal_s:
                    next_heal_s = time.monotonic() + context.settings.maintenance_interval_s
                    try:
                        context.healer.heal()
                    except Exception:
                        logger.exception("healing pass failed; the next pass retries")
                if sleep_s > 0:
                    self._stop.wait(sleep_s)
        finally:
            context.close()


class WebhookDeliveryLoop(bootsteps.StartStopStep):
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._redis: redis.Redis | None = None

    def start(self, parent: Any) -> None:
        settings = get_settings()
        self._engine = make_engine(settings.database_url)
        self._redis = flow_redis(settings)
        loop = DeliveryLoop(
            make_session_factory(self._engine),
            settings,
            metrics=MetricsRecorder(self._redis, flush_interval_s=settings.metrics_flush_s),
        )
        self._thread = threading.Thread(
            target=loop.run, args=(self._stop,), name="pmsq-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._engine is not None:
            self._engine.dispose()
        if self._redis is not None:
            self._redis.close()

"""A worker bootstep running the dispatcher loop in a thread of the worker's main process.

Every worker runs one; the dispatcher's row-locked transitions make that safe, and it means
no extra process is needed to admit due retries or reclaim the leases of killed workers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps
from prometheus_client import CollectorRegistry, start_http_server

from pmsq.metrics import ClusterCollector
from pmsq.settings import get_settings
from pmsq.workers.flow.gauges import FlowGauges

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
            while not self._stop.is_set():
                try:
                    sleep_s = context.dispatcher.tick()
                except Exception:
                    logger.exception("dispatcher tick failed; retrying")
                    sleep_s = context.settings.dispatch_interval_s
                if sleep_s > 0:
                    self._stop.wait(sleep_s)
        finally:
            context.close()

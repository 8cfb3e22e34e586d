"""Serving the API in production: wires settings to the app and runs uvicorn (`pmsq api`)."""

from __future__ import annotations

import uvicorn

from pmsq.api.app import create_app
from pmsq.metrics import ClusterCollector, MetricsRecorder
from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.migrate import upgrade
from pmsq.redis_client import flow_redis
from pmsq.scheduler.changes import signal_schedule_changes
from pmsq.settings import Settings
from pmsq.tracing import configure as configure_tracing
from pmsq.workers.flow.gauges import FlowGauges
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.publisher import CeleryPublisher, WriteTraces


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the API until interrupted; migrates first when PMSQ_AUTO_MIGRATE is on."""
    from pmsq.workers.app import app as celery_app

    if settings.auto_migrate:
        upgrade(settings.database_url)
    configure_tracing("pmsq-api")
    engine = make_engine(settings.database_url)
    redis_client = flow_redis(settings)
    signal_schedule_changes(engine, redis_client)  # beat re-reads schedules when signalled
    try:
        app = create_app(
            settings,
            make_session_factory(engine),
            CeleryPublisher(celery_app, settings.job_queue, WriteTraces(redis_client)),
            RedisFlowControl(redis_client),
            metrics=[ClusterCollector(redis_client), FlowGauges(redis_client)],
            recorder=MetricsRecorder(redis_client, flush_interval_s=settings.metrics_flush_s),
        )
        # No access log: at "warning" its lines are dropped anyway, but uvicorn would still
        # format each request's client address and path for it.
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        redis_client.close()
        engine.dispose()

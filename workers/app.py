"""The Celery app: `celery -A pmsq.workers.app worker|beat|flower`.

Delivery is at-least-once and safe: acks after the task ends (`acks_late`), also when it raised
(a failed job), a message whose worker died is handed back (`reject_on_worker_lost`), prefetch 1
so no job waits in a busy worker's buffer, JSON only, results ignored (the job store is the
source of truth).

Task events cost a Redis PUBLISH each, several per job, so they are off until a monitor asks:
Flower broadcasts `enable_events` every few seconds and workers honour it
(`PMSQ_TASK_EVENTS=true` has them on from the start).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_shutdown,
)

from pmsq.logs import install
from pmsq.metrics import flush_metrics
from pmsq.models.db import make_engine
from pmsq.redis_client import broker_transport_options
from pmsq.settings import get_settings
from pmsq.tracing import configure as configure_tracing
from pmsq.workers.bootsteps import DispatcherLoop, WebhookDeliveryLoop
from pmsq.workers.broker import broker_transport

settings = get_settings()

app = Celery("pmsq", include=["pmsq.workers.tasks"])
app.conf.update(
    broker_url=settings.celery_broker_url,
    broker_connection_retry_on_startup=True,
    task_default_queue=settings.job_queue,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A job task raises once the job store holds its failure (so Flower shows it failed):
    # that message must be acked, not redelivered. Celery's default, pinned here.
    task_acks_on_failure_or_timeout=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    worker_send_task_events=settings.task_events,
    task_send_sent_event=settings.task_events,
    worker_hijack_root_logger=False,
    broker_transport=broker_transport(settings.celery_broker_url),
    broker_transport_options=broker_transport_options(settings),
    beat_scheduler="pmsq.scheduler.beat:DatabaseScheduler",
    beat_max_loop_interval=1,
)
app.steps["worker"].add(DispatcherLoop)
app.steps["worker"].add(WebhookDeliveryLoop)

# httpx logs every request it sends at INFO: a line per PMS call and webhook delivery, which
# the job's own logs already hold in full. Its warnings and errors still show.
logging.getLogger("httpx").setLevel(logging.WARNING)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _structured_logs(logger: logging.Logger, **_: Any) -> None:
    for handler in logger.handlers:
        install(handler, settings.log_format)


@worker_init.connect
def _job_store_driver(**_: Any) -> None:
    """Import the job store's driver and dialect before the pool forks (an engine, created and
    disposed: no connection is made), so each pool process inherits them instead of importing
    them during its first job (psycopg's took about a second on a busy 2-CPU host)."""
    make_engine(settings.database_url).dispose()


@worker_init.connect
def _tracing(**_: Any) -> None:
    """Traces are on when OTEL_TRACES_EXPORTER says so; set up before the pool forks (the
    span exporter's thread restarts in each pool process)."""
    configure_tracing("pmsq-worker")


@worker_process_shutdown.connect
def _send_last_metrics(**_: Any) -> None:
    """A prefork pool process ends with os._exit (no atexit handlers): its last metrics go now."""
    flush_metrics()

"""Celery's built-in `rate_limit`: `celery -A bench.flow_peers.celery_peer worker -Q bench.flow`.

Broker URL from `BENCH_FLOW_CELERY_BROKER_URL`. Delivery settings are pmsq's (`pmsq.workers.app`):
acks late, prefetch 1, JSON. `write_a` carries `rate_limit="10/s"`, integration A's limit as
Celery expresses it: a token bucket in each worker's consumer, for that task type only, with no
notion of a PMS, a tenant or a concurrency cap. `write_b` is integration B: no limit. Both
share one queue, as one task type per integration would in a single Celery deployment.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.flow_peers.common import EXECUTIONS_KEY, PeerContext

#: Env var: the peer's broker (a Redis database of its own).
BROKER_URL_ENV = "BENCH_FLOW_CELERY_BROKER_URL"
#: The one queue both tasks use.
QUEUE = "bench.flow"
#: Integration A's limit in Celery's notation.
RATE_LIMIT_A = "10/s"
WRITE_A = "bench.flow.write_a"
WRITE_B = "bench.flow.write_b"

app = Celery("bench_flow_celery", broker=os.environ.get(BROKER_URL_ENV, "memory://"))
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)

_context = PeerContext()


def _write(tenant: str, seq: int) -> None:
    _context.count(EXECUTIONS_KEY, tenant)
    _context.write(tenant, seq)


@app.task(name=WRITE_A, rate_limit=RATE_LIMIT_A)
def write_a(tenant: str, seq: int) -> None:
    """One write of integration A, under Celery's per-worker rate limit."""
    _write(tenant, seq)


@app.task(name=WRITE_B)
def write_b(tenant: str, seq: int) -> None:
    """One write of integration B (generous limits: none at all)."""
    _write(tenant, seq)

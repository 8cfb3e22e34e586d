"""Celery tasks. Thin: decode the message, hand the job to the runner."""

from __future__ import annotations

from typing import Any

from celery import Task

from pmsq.errors import JobFailed
from pmsq.metrics import MetricsRecorder
from pmsq.settings import get_settings
from pmsq.tracing import task_span
from pmsq.workers.app import app
from pmsq.workers.context import WorkerContext
from pmsq.workers.publisher import RUN_JOB_TASK
from pmsq.workers.task_state import task_result
from pmsq.workers.webhooks.deliverer import DELIVER_WEBHOOK_TASK, build_deliverer


class JobTask(Task):
    """Holds this process's worker context, built on first use (after the pool forked)."""

    _context: WorkerContext | None = None

    @property
    def context(self) -> WorkerContext:
        if JobTask._context is None:
            JobTask._context = WorkerContext.build(get_settings(), self.app)
        return JobTask._context


# A failed job is an expected outcome, not a bug: `throws` has Celery log it without a traceback.
@app.task(name=RUN_JOB_TASK, base=JobTask, bind=True, acks_late=True, throws=(JobFailed,))
def run_job(self: JobTask, job_id: str, **labels: Any) -> str | None:
    """Run job `job_id`. `labels` (integration_id, step) are there for Flower only.

    Raises `JobFailed` or Celery's `Retry` once the job store holds a failure or a retry, so
    the task's state in Flower is the job's (`pmsq.workers.task_state`)."""
    with task_span(self.request, RUN_JOB_TASK, job_id=job_id, **_ids(labels)):
        status = self.context.runner.run(job_id)
        return task_result(self.context.session_factory, job_id, status)


def _ids(labels: dict[str, Any]) -> dict[str, str | None]:
    integration_id = labels.get("integration_id")
    return {"integration_id": integration_id if isinstance(integration_id, str) else None}


@app.task(name=DELIVER_WEBHOOK_TASK, base=JobTask, bind=True, acks_late=True)
def deliver_webhook(self: JobTask, delivery_id: str) -> str | None:
    """Attempt webhook delivery `delivery_id` now if it is due and unclaimed (the dispatchers'
    maintenance passes send every due delivery anyway; this is the on-demand path)."""
    ctx = self.context
    deliverer = build_deliverer(
        ctx.session_factory,
        ctx.settings,
        ctx.http,
        metrics=MetricsRecorder(ctx.redis, flush_interval_s=ctx.settings.metrics_flush_s),
    )
    status = deliverer.deliver(delivery_id)
    return status.value if status is not None else None

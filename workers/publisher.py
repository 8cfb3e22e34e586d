"""Puts admitted jobs on the Celery broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from celery import Celery

from pmsq.tracing import headers_to_send

#: Name of the Celery task that runs one job.
RUN_JOB_TASK = "pmsq.run_job"


@dataclass(frozen=True)
class AdmittedJob:
    job_id: str
    integration_id: str
    model: str
    action: str


class Publisher(Protocol):
    def publish(self, job: AdmittedJob) -> None: ...


class CeleryPublisher:
    """Publishes one `pmsq.run_job` message per admitted job.

    The integration, model and action travel as keyword arguments only so that Flower shows
    operators which integration each task belongs to; the worker trusts the job store. The
    message's headers carry the current trace context (W3C), so the task continues the trace.
    """

    def __init__(self, app: Celery, queue: str) -> None:
        self._app = app
        self._queue = queue

    def publish(self, job: AdmittedJob) -> None:
        self._app.send_task(
            RUN_JOB_TASK,
            args=[job.job_id],
            kwargs={"integration_id": job.integration_id, "step": f"{job.model}.{job.action}"},
            queue=self._queue,
            headers=headers_to_send(),
        )

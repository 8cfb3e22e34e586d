"""Puts admitted jobs on the Celery broker."""

from __future__ import annotations

import json
import logging
import os
import weakref
from dataclasses import dataclass
from typing import Protocol

import redis
from celery import Celery
from kombu.messaging import Producer

from pmsq.tracing import headers_to_send, tracing_on
from pmsq.workers.flow.keys import WRITE_TRACE_TTL_S, IntegrationKeys

logger = logging.getLogger(__name__)

#: Name of the Celery task that runs one job.
RUN_JOB_TASK = "pmsq.run_job"


@dataclass(frozen=True)
class AdmittedJob:
    job_id: str
    integration_id: str
    model: str
    action: str
    #: The write the job belongs to (None: not known to the caller).
    root_job_id: str | None = None


class Publisher(Protocol):
    def publish(self, job: AdmittedJob) -> None: ...


class WriteTraces:
    """Remembers, in Redis, the trace context each write's jobs were first admitted under, so
    the write stays one trace: a job admitted later by a dispatcher (a retry when it is due, a
    job that waited in its backlog) has no trace of its own to continue, and joins its write's.

    Costs nothing while tracing is off; with it on, one SET per message published in a trace
    and one GET per message published outside one. Redis failing here never stops a publish.
    """

    def __init__(self, client: redis.Redis, ttl_s: int = WRITE_TRACE_TTL_S) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    def headers(self, job: AdmittedJob) -> dict[str, str]:
        """The trace headers `job`'s message carries: the current trace's, else its write's."""
        current = headers_to_send()
        if job.root_job_id is None or not tracing_on():
            return current
        key = IntegrationKeys(job.integration_id).write_trace(job.root_job_id)
        try:
            if current:
                self._redis.set(key, json.dumps(current), ex=self._ttl_s, nx=True)
                return current
            stored = self._redis.get(key)
        except redis.RedisError as exc:
            logger.warning("write trace context unavailable: %s", type(exc).__name__)
            return current
        return dict(json.loads(stored)) if stored else {}


class CeleryPublisher:
    """Publishes one `pmsq.run_job` message per admitted job.

    The integration, model and action travel as keyword arguments only so that Flower shows
    operators which integration each task belongs to; the worker trusts the job store. The
    message's headers carry a trace context (W3C), so the task continues its write's trace.

    A publish runs for every admitted job, in every worker and in the API, so it skips what
    Celery would redo per message for nothing, through `send_task`'s own options:

    - the producer: Celery's pool would hand one out per message and bind it to a channel
      again each time; this publisher keeps its own, each on a broker connection of its own
      (as many as publish at once: one per thread that does), reused from message to message.
      A dropped connection is reconnected by Celery's publish retry as a pooled producer's
      would be; a producer whose publish failed for good is closed, not reused.
    - the result: results are ignored (`ignore_result` travels in the message, as
      `task_ignore_result` already says), so no result backend is looked up and no
      `AsyncResult` made, and a run's own job task keeps no trail of what it published.
    - the arguments' display text (`argsrepr`, `kwargsrepr`: what Flower and `celery inspect`
      show) is the plain `repr` of these short strings, the text Celery's size-capped
      `saferepr` makes of them;
    - the queue is declared by this publisher's first message only. The message goes to the
      queue's list by name either way (the default exchange), so a declaration routes nothing:
      it registers the queue for tools, and every worker consuming the queue declares it
      again when it connects.

    Celery's publish retry policy applies to every message."""

    def __init__(self, app: Celery, queue: str, traces: WriteTraces | None = None) -> None:
        self._app = app
        self._queue = queue
        self._traces = traces
        #: `declare` of the next message: Celery's default (the queue) until one was sent.
        self._declare: list[object] | None = None
        #: Producers no thread is publishing through (list.pop and .append are atomic).
        self._idle: list[Producer] = []
        _forget_after_fork(self)

    def publish(self, job: AdmittedJob) -> None:
        headers = self._traces.headers(job) if self._traces is not None else headers_to_send()
        args = [job.job_id]
        kwargs = {"integration_id": job.integration_id, "step": f"{job.model}.{job.action}"}
        try:
            producer = self._idle.pop()
        except IndexError:
            producer = self._app.amqp.Producer(self._app.connection_for_write(), auto_declare=False)
        try:
            self._app.send_task(
                RUN_JOB_TASK,
                args=args,
                kwargs=kwargs,
                queue=self._queue,
                headers=headers,
                argsrepr=repr(args),
                kwargsrepr=repr(kwargs),
                declare=self._declare,
                producer=producer,
                ignore_result=True,
                add_to_parent=False,
                result_cls=_Sent,
            )
        except BaseException:
            producer.connection.close()
            raise
        self._idle.append(producer)
        self._declare = []

    def _after_fork(self) -> None:
        """A forked child must not write to its parent's broker connections: it makes its own."""
        self._idle = []


class _Sent:
    """What `send_task` returns of a message published here: its task id (nobody waits for a
    result)."""

    __slots__ = ("id", "ignored")

    def __init__(self, task_id: str) -> None:
        self.id = task_id
        self.ignored = True


def _forget_after_fork(publisher: CeleryPublisher) -> None:
    ref = weakref.ref(publisher)

    def after_fork() -> None:
        alive = ref()
        if alive is not None:
            alive._after_fork()

    os.register_at_fork(after_in_child=after_fork)

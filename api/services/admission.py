"""Admitting accepted writes without holding up their answer.

A write is accepted once its root job is committed and put in its integration's backlog in
Redis (one round trip, in the request). Admitting it (the admission script, moving the job to
QUEUED, publishing it to the broker, the metrics and the integration's next wake time) takes
several more round trips; the request does not wait for them. `Admissions` hands the
integration to a few threads of its own (`ADMISSION_THREADS`, so one slow round trip does not
hold up every other integration), which take the integrations in the order they were handed
over. Writes of one integration that arrive while it waits are admitted together: as many
admissions as it got writes at most, fewer when one admission takes several jobs of the
backlog (up to `ADMIT_BATCH`), and none more once the limits leave jobs waiting (the
integration is then due again when they allow it, for any dispatcher).

Nothing is lost if that thread is late, fails or dies with its process: the backlog is in
Redis and the integration is due there at once, so the dispatcher of any worker admits it at
its next tick (within `PMSQ_DISPATCH_INTERVAL_S`). The thread only spares a write that wait.
The set of integrations waiting for the thread holds each integration once, so it is bounded
by the number of integrations, whatever the rate of writes.

With tracing on, a write is admitted in its request, as before: its admission's span and the
trace context its broker message carries are the request's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from pmsq.logs import log_context
from pmsq.tracing import tracing_on
from pmsq.workers.dispatch import Dispatcher

logger = logging.getLogger(__name__)

#: Threads admitting for one API process. Admissions of distinct integrations overlap their
#: round trips to Redis and the database; one integration's never need to.
ADMISSION_THREADS = 4
#: Seconds `close` waits for the admissions in progress to end.
CLOSE_TIMEOUT_S = 5.0


class Submitter(Protocol):
    """Puts committed PENDING jobs in their backlog and has them admitted: a `Dispatcher`
    admits in the caller's thread, `Admissions` on threads of its own."""

    def submit(self, integration_id: str, job_ids: Sequence[str]) -> object: ...


class Admissions:
    """Puts accepted jobs in their backlog, then admits their integrations on threads of its
    own (started on first use). Safe to share between the API's threads."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._wake = threading.Condition()
        #: Integrations to admit, in the order they were handed over, with how many jobs.
        self._due: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, integration_id: str, job_ids: Sequence[str]) -> None:
        """Enqueue the committed PENDING `job_ids` and have them admitted. Raises what Redis
        raises while enqueueing (the caller logs it: the orphan sweep enqueues the jobs)."""
        if tracing_on():
            self._dispatcher.submit(integration_id, job_ids)
            return
        self._dispatcher.flow.enqueue(integration_id, job_ids)
        with self._wake:
            if self._closed:
                return  # shutting down: a worker's dispatcher admits it
            self._due[integration_id] = self._due.get(integration_id, 0) + len(job_ids)
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"pmsq-admissions-{n}", daemon=True)
                    for n in range(ADMISSION_THREADS)
                ]
                for thread in self._threads:
                    thread.start()
            self._wake.notify()

    def close(self) -> None:
        """Stop the threads after the admissions in progress; what is left is admitted by
        the workers' dispatchers."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                integration_id = next(iter(self._due))
                jobs = self._due.pop(integration_id)
            self._admit(integration_id, jobs)

    def _admit(self, integration_id: str, jobs: int) -> None:
        """Admit until `jobs` were published or an admission publishes nothing."""
        try:
            with log_context(integration_id=integration_id):
                while jobs > 0:
                    published = self._dispatcher.admit_integration(integration_id)
                    if not published:
                        return
                    jobs -= published
        except Exception as exc:
            logger.warning(
                "admission of integration %s failed (%s); a worker's dispatcher admits it",
                integration_id,
                type(exc).__name__,
            )

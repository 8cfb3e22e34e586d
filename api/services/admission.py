"""Admitting accepted writes without holding up their answer.

A write is accepted once its root job is committed: the job store is the truth, and a PENDING
job missing from Redis is put in its backlog by any worker's orphan sweep. Putting it in its
integration's backlog and admitting it (one round trip to flow control: the `submit` script
enqueues and admits together), moving it to QUEUED and publishing it to the broker happen on
a few threads of the API's own (`ADMISSION_THREADS`, so one slow round trip does not hold up
every other integration), which take the integrations in the order they were handed over.
Writes of one integration that arrive while it waits go to Redis together, in one round trip.

Nothing is lost if a thread is late, fails or dies with its process: a failed submit is logged
and the jobs stay PENDING in the job store, where the orphan sweep of any worker finds them
(after `ORPHAN_AGE_S` in `pmsq.workers.healing`) and enqueues them. `close` submits what is
still waiting. The map of integrations waiting for a thread holds each integration once.

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
        #: Integrations to admit, in the order they were handed over, with their jobs.
        self._due: dict[str, list[str]] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, integration_id: str, job_ids: Sequence[str]) -> None:
        """Have the committed PENDING `job_ids` enqueued and admitted. In the caller's thread
        when tracing is on or the threads are closed (then it raises what Redis raises; the
        caller logs it and the orphan sweep enqueues the jobs)."""
        if tracing_on():
            self._dispatcher.submit(integration_id, job_ids)
            return
        with self._wake:
            closed = self._closed
            if not closed:
                self._due.setdefault(integration_id, []).extend(job_ids)
                self._start_threads()
                self._wake.notify()
        if closed:
            self._dispatcher.submit(integration_id, job_ids)

    def _start_threads(self) -> None:
        """Started on first use, so an API that takes no write runs none (caller holds the
        lock)."""
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._run, name=f"pmsq-admissions-{n}", daemon=True)
                for n in range(ADMISSION_THREADS)
            ]
            for thread in self._threads:
                thread.start()

    def close(self) -> None:
        """Stop the threads after the admissions in progress, then submit what was still
        waiting (what fails is left to the orphan sweep)."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            threads = list(self._threads)
            left = dict(self._due)
            self._due.clear()
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for integration_id, job_ids in left.items():
            self._admit(integration_id, job_ids)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                integration_id = next(iter(self._due))
                job_ids = self._due.pop(integration_id)
            self._admit(integration_id, job_ids)

    def _admit(self, integration_id: str, job_ids: Sequence[str]) -> None:
        """Enqueue `job_ids` and admit what the limits allow (one round trip when they allow
        all of them, or none); admit again while that admits some, as a dispatcher tick would
        (`Dispatcher.submit_all`)."""
        try:
            with log_context(integration_id=integration_id):
                self._dispatcher.submit_all(integration_id, job_ids)
        except Exception as exc:
            logger.warning(
                "admission of integration %s failed (%s); the orphan sweep enqueues its jobs",
                integration_id,
                type(exc).__name__,
            )

"""Keeps a running job's leases alive while its worker lives.

A thread extends the job's concurrency lease (Redis) and its RUNNING claim (database) every
third of the lease. When the worker dies the extensions stop, so the slot and the job come back
within one lease, however long healthy jobs run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from models.enums import JobStatus
from models.job import Job
from workers.flow.backend import FlowControl

logger = logging.getLogger(__name__)


class LeaseHeartbeat:
    def __init__(
        self,
        *,
        flow: FlowControl,
        session_factory: sessionmaker[Session],
        integration_id: str,
        job_id: str,
        delivery: int,
        lease_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._flow = flow
        self._session_factory = session_factory
        self._integration_id = integration_id
        self._job_id = job_id
        self._delivery = delivery
        self._lease_s = lease_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                self.beat()
            except Exception:
                logger.exception("job %s: lease extension failed", self._job_id)

    def beat(self) -> None:
        if not self._flow.hold(self._integration_id, self._job_id, self._lease_s):
            logger.warning("job %s: concurrency lease lapsed and its slot was taken", self._job_id)
        expires = self._clock() + timedelta(seconds=self._lease_s)
        with self._session_factory.begin() as session:
            session.execute(
                update(Job)
                .where(
                    Job.id == self._job_id,
                    Job.status == JobStatus.RUNNING.value,
                    Job.deliveries == self._delivery,
                )
                .values(lease_expires_at=expires)
            )

"""Keeps a running job's leases alive while its worker lives, and says when they are lost.

A thread renews the job's claim lease (Redis) and its RUNNING claim (database) every third of
the lease. When the worker dies the renewals stop, so the slot and the job come back within one
lease, however long healthy jobs run. When a renewal fails (the lease lapsed while the worker
was paused, the job was reclaimed for a newer delivery, or Redis was out for longer than the
lease) the heartbeat sets `lost` and stops; the request pacer checks it before every request.
Expiries are taken from Redis's clock, never this host's.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from types import TracebackType
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session, sessionmaker

from pmsq.models.enums import JobStatus
from pmsq.models.job import Job
from pmsq.workers.flow.backend import FlowControl, redis_time

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
    ) -> None:
        self._flow = flow
        self._session_factory = session_factory
        self._integration_id = integration_id
        self._job_id = job_id
        self._delivery = delivery
        self._lease_s = lease_s
        #: Set once the claim is known lost; the job must send nothing more.
        self.lost = threading.Event()
        self._stop = threading.Event()
        #: Monotonic time by which the last renewal's lease runs out (the claim took one).
        self._held_until_s = time.monotonic() + lease_s
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
        while not self._stop.wait(self._lease_s / 3) and not self.lost.is_set():
            asked_at_s = time.monotonic()
            try:
                self.beat(asked_at_s)
            except Exception:
                logger.exception("job %s: lease renewal failed", self._job_id)
                if time.monotonic() >= self._held_until_s:
                    # No renewal got through for a whole lease: another worker may have it.
                    self._lose("no lease renewal succeeded for a whole lease")

    def beat(self, asked_at_s: float | None = None) -> None:
        """One renewal. `asked_at_s` (monotonic) is when it was asked, so the local bound on
        the lease never runs past what Redis granted."""
        asked_at_s = time.monotonic() if asked_at_s is None else asked_at_s
        held = self._flow.renew(self._integration_id, self._job_id, self._delivery, self._lease_s)
        if not held.held:
            self._lose("its lease lapsed or the job was handed to a newer delivery")
            return
        self._held_until_s = asked_at_s + self._lease_s
        expires = redis_time(held.now_us) + timedelta(seconds=self._lease_s)
        with self._session_factory.begin() as session:
            result = session.execute(
                update(Job)
                .where(
                    Job.id == self._job_id,
                    Job.status == JobStatus.RUNNING.value,
                    Job.deliveries == self._delivery,
                )
                .values(lease_expires_at=expires)
            )
        if not cast(CursorResult[Any], result).rowcount:
            self._lose("the job is no longer RUNNING under this delivery")

    def _lose(self, why: str) -> None:
        logger.warning("job %s: claim %d lost (%s); stopping", self._job_id, self._delivery, why)
        self.lost.set()

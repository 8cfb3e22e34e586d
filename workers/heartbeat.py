"""Keeps running jobs' leases alive while their worker lives, and says when they are lost.

A job's lease is renewed (Redis) and its RUNNING claim (database) with it every third of the
lease. When the worker dies the renewals stop, so the slot and the job come back within one
lease, however long healthy jobs run. When a renewal fails (the lease lapsed while the worker
was paused, the job was reclaimed for a newer delivery, or Redis was out for longer than the
lease) the job's heartbeat sets `lost` and stops; the request pacer checks it before every
request. Expiries are taken from Redis's clock, never this host's.

One `LeaseRenewer` thread per process renews every job the process runs. Most jobs finish
long before their first renewal is due, so a job costs no thread of its own, and the thread
sleeps while no job is old enough to need one.
"""

from __future__ import annotations

import logging
import math
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


class LeaseRenewer:
    """The thread that renews the leases of every job of this process that outlives a third
    of its lease; started on the first job (after the pool forked) and again if it is gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heartbeats: set[LeaseHeartbeat] = set()
        #: Monotonic time the thread sleeps until (inf: no job; -inf: renewing right now), so
        #: a job only wakes it when its renewal is due before that.
        self._wake_at_s = math.inf
        self._thread: threading.Thread | None = None

    def add(self, heartbeat: LeaseHeartbeat) -> None:
        with self._lock:
            self._heartbeats.add(heartbeat)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-renewer", daemon=True)
                self._thread.start()
            elif heartbeat.due_s < self._wake_at_s:
                self._wake.notify()

    def discard(self, heartbeat: LeaseHeartbeat) -> None:
        with self._lock:
            self._heartbeats.discard(heartbeat)

    def _run(self) -> None:
        while True:
            with self._lock:
                now_s = time.monotonic()
                due = [hb for hb in self._heartbeats if hb.due_s <= now_s]
                if not due:
                    self._wake_at_s = min((hb.due_s for hb in self._heartbeats), default=math.inf)
                    timeout_s = None if self._wake_at_s == math.inf else self._wake_at_s - now_s
                    self._wake.wait(timeout_s)
                    continue
                self._wake_at_s = -math.inf
            for heartbeat in due:  # outside the lock: jobs come and go meanwhile
                if not heartbeat.renew_due():
                    self.discard(heartbeat)


class LeaseHeartbeat:
    """One running job's lease renewals, made by its process's `LeaseRenewer` while the job
    is inside `with heartbeat:`; none is in flight once the block is left."""

    def __init__(
        self,
        *,
        flow: FlowControl,
        session_factory: sessionmaker[Session],
        integration_id: str,
        job_id: str,
        delivery: int,
        lease_s: float,
        renewer: LeaseRenewer | None = None,
    ) -> None:
        """`renewer`: the process's renewal thread; without one, nothing renews the lease
        but explicit calls of `beat`."""
        self._flow = flow
        self._session_factory = session_factory
        self._integration_id = integration_id
        self._job_id = job_id
        self._delivery = delivery
        self._lease_s = lease_s
        self._renewer = renewer
        #: Set once the claim is known lost; the job must send nothing more.
        self.lost = threading.Event()
        #: Held while a renewal is in flight; `stopped` is set under it when the job ends.
        self._renewing = threading.Lock()
        self._stopped = False
        #: Monotonic time by which the last renewal's lease runs out (the claim took one).
        self._held_until_s = time.monotonic() + lease_s
        #: Monotonic time the next renewal is due.
        self.due_s = time.monotonic() + lease_s / 3

    def __enter__(self) -> LeaseHeartbeat:
        if self._renewer is not None:
            self._renewer.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._renewer is not None:
            self._renewer.discard(self)
        with self._renewing:  # waits for a renewal in flight
            self._stopped = True

    def renew_due(self) -> bool:
        """The renewal that is due now; False once this heartbeat needs no more of them
        (the job ended or the claim is lost)."""
        with self._renewing:
            if self._stopped or self.lost.is_set():
                return False
            asked_at_s = time.monotonic()
            self.due_s = asked_at_s + self._lease_s / 3
            try:
                self.beat(asked_at_s)
            except Exception:
                logger.exception("job %s: lease renewal failed", self._job_id)
                if time.monotonic() >= self._held_until_s:
                    # No renewal got through for a whole lease: another worker may have it.
                    self._lose("no lease renewal succeeded for a whole lease")
            return not self.lost.is_set()

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

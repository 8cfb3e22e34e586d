"""Admission: the step between the job store and the broker.

A job waits PENDING in the job store and, by id, in its integration's backlog in Redis. The
dispatcher asks flow control which jobs may start now (the atomic `admit.lua`), moves those to
QUEUED and publishes them; when a run ends it gives the slot back and submits what comes next
(a retry, spawned children, the next waiting job), moving those to QUEUED in the transaction
that records the run's outcome and publishing them once it committed. Every job move is
guarded in the job store (an admitted batch goes PENDING -> QUEUED in one UPDATE that skips
what is no longer PENDING) and every lease decision an atomic Lua script on Redis's clock
(never this host's), so a dispatcher may run in every worker and in the API at once, and an
extra broker message is harmless: it is dropped at claim. Repairing what a lost worker,
message or Redis left behind is `pmsq.workers.healing`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from pmsq.metrics import MetricsRecorder, NullMetrics
from pmsq.models.base import utcnow
from pmsq.models.db import write_engine
from pmsq.settings import Settings
from pmsq.tracing import traced
from pmsq.workers.flow.backend import Admission, FlowControl
from pmsq.workers.flow.keys import claim_member
from pmsq.workers.flow.limits import Limits
from pmsq.workers.publisher import AdmittedJob, Publisher
from pmsq.workers.repository import JobRepository, QueuedJob, queue_admitted

logger = logging.getLogger(__name__)

#: Most jobs one admission call admits for one integration.
ADMIT_BATCH = 50
#: Most integrations one tick claims.
CLAIM_BATCH = 64
#: How long a claimed integration is left to this dispatcher before others may take it.
CLAIM_S = 5.0
#: Shortest sleep of the loop, so a busy ready set does not spin.
MIN_SLEEP_S = 0.0005


@dataclass(frozen=True)
class FinishedRun:
    """What a run's `finish_run` admitted, and what of it the recording transaction moved to
    QUEUED (`queue_finished`): for `publish_finished` once that transaction committed."""

    integration_id: str
    admission: Admission
    #: The admitted jobs queued, by id; None when there is yet to admit (no limits).
    queued: Mapping[str, QueuedJob] | None


class Dispatcher:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        publisher: Publisher,
        flow: FlowControl,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._metrics = metrics or NullMetrics()
        self._publisher = publisher
        self._flow = flow
        self._settings = settings
        self._clock = clock

    @cached_property
    def _engine(self) -> Engine:
        """What an admitted batch is queued through: `session_factory`'s, found on first use
        (a dispatcher is built before any job store is needed)."""
        return write_engine(self._session_factory)

    @property
    def flow(self) -> FlowControl:
        return self._flow

    @property
    def metrics(self) -> MetricsRecorder:
        return self._metrics

    # -- admission ---------------------------------------------------------------------------

    @traced("pmsq.admit")
    def submit(self, integration_id: str, job_ids: Sequence[str], delay_s: float = 0.0) -> int:
        """Put committed PENDING jobs in their backlog and admit what may start at once (one
        round trip when that empties the backlog)."""
        if not job_ids:
            return 0
        lease_s = self._settings.job_lease_s
        admission = self._flow.submit(
            integration_id, job_ids, ADMIT_BATCH, lease_s, delay_s=max(0.0, delay_s)
        )
        return self._settle(integration_id, admission)

    @traced("pmsq.admit")
    def submit_all(self, integration_id: str, job_ids: Sequence[str]) -> int:
        """`submit`, then admit again at once while the last admission admitted some (it may
        have stopped at its batch size, `ADMIT_BATCH`, or at a rate that frees the next
        admission within microseconds), as a dispatcher tick would, until as many were
        published as were submitted; returns how many were published.

        An admission that admitted nothing ends it, the first too: what stopped it (no free
        slot, the rate, a pause, jobs due later) stops the next one as well, and the ready set
        already tells a dispatcher when to come back. A write that waits behind others for a
        slot costs one round trip to flow control, not two."""
        if not job_ids:
            return 0
        lease_s = self._settings.job_lease_s
        admission = self._flow.submit(integration_id, job_ids, ADMIT_BATCH, lease_s)
        published, admitted = self._settled(integration_id, admission)
        while admitted and published < len(job_ids):
            more, admitted = self._settled(integration_id, self._admit(integration_id, None))
            published += more
        return published

    @traced("pmsq.admit")
    def resubmit_interrupted(self, integration_id: str, job_ids: Sequence[str]) -> int:
        """Put jobs that were admitted once but did not run to the end (a lost worker
        interrupted them, their message was lost, or it reached a worker only after its
        admission lease lapsed and every slot was taken) back at the head of their backlog:
        they had their turn already, so they resume within about a lease however long the
        backlog. Then admit what may start at once."""
        lease_s = self._settings.job_lease_s
        if job_ids:
            admission = self._flow.submit(integration_id, job_ids, ADMIT_BATCH, lease_s, ahead=True)
        else:
            admission = self._admit(integration_id, None)
        return self._settle(integration_id, admission)

    @traced("pmsq.admit")
    def admit_integration(self, integration_id: str, claim_us: int | None = None) -> int:
        """Admit what the integration's limits allow now; returns how many were published.
        `claim_us`: the ready-set claim this dispatcher holds on the integration (`tick`)."""
        return self._settle(integration_id, self._admit(integration_id, claim_us), claim_us)

    def finish_run(
        self,
        integration_id: str,
        job_id: str,
        delivery: int,
        retry_delay_s: float | None,
        spawned: Sequence[str],
        pms_headers: Mapping[str, str] | None = None,
    ) -> Admission:
        """What a run whose outcome is being recorded tells flow control, in one round trip:
        the slot its delivery held goes back, its retry (when `retry_delay_s` is not None) and
        its spawned children go in the backlog, the PMS's limit headers are kept, and the freed
        slot goes to the next waiting job at once, not at the next tick.

        Called inside the transaction that records the outcome, before it commits; then
        `queue_finished` on that transaction and, once it committed, `publish_finished`. That
        order is safe should the transaction roll back after this call: a job is only ever
        claimed from QUEUED, and what this admission admitted turns QUEUED only in that
        transaction. The run's job stays RUNNING with its job-store lease, so the healer
        reclaims it (under its row lock, finding the claim's lease gone) as after a worker lost
        before its record; an admitted job stays PENDING with an admission lease that lapses,
        and is put back by the orphan sweep; a retry or children put in the backlog but absent
        or no longer PENDING in the job store have their admission given back by
        `_publish`. Writes nothing to the job store: a failure here (Redis down) leaves the
        caller's transaction whole, free to commit the outcome anyway."""
        requeue = [(job_id, retry_delay_s)] if retry_delay_s is not None else []
        requeue += [(child, 0.0) for child in spawned]
        return self._flow.finish(
            integration_id,
            claim_member(job_id, delivery),
            ADMIT_BATCH,
            self._settings.job_lease_s,
            requeue=requeue,
            pms_headers=pms_headers,
        )

    def queue_finished(
        self, connection: Connection, integration_id: str, admission: Admission
    ) -> FinishedRun:
        """Move what `finish_run` admitted to QUEUED on `connection`, in the caller's
        transaction (one statement, none when it admitted nothing). The rows are locked last in
        that transaction, after the outcome's: no transaction that locks a PENDING job waits
        for another lock while holding it, so this adds no lock cycle. Nothing when flow
        control had no limits: `publish_finished` loads them and admits after the commit (that
        reads the job store on a connection of its own, which must not wait for this one)."""
        if admission.status == "nolimits":
            return FinishedRun(integration_id, admission, None)
        queued = queue_admitted(connection, admission.job_ids, self._clock())
        return FinishedRun(integration_id, admission, queued)

    @traced("pmsq.admit")
    def publish_finished(self, finished: FinishedRun) -> int:
        """Once the transaction of `queue_finished` committed: publish what it queued in
        admission order, give back the admission of each admitted job it did not queue, and
        tell the ready set when to come back (`_settled`); returns how many were published."""
        return self._settled(finished.integration_id, finished.admission, queued=finished.queued)[0]

    def _admit(self, integration_id: str, claim_us: int | None) -> Admission:
        lease_s = self._settings.job_lease_s
        if claim_us is None:
            return self._flow.admit(integration_id, ADMIT_BATCH, lease_s)
        return self._flow.admit(integration_id, ADMIT_BATCH, lease_s, claimed=True)

    def _settle(
        self, integration_id: str, admission: Admission, claim_us: int | None = None
    ) -> int:
        return self._settled(integration_id, admission, claim_us)[0]

    def _settled(
        self,
        integration_id: str,
        admission: Admission,
        claim_us: int | None = None,
        queued: Mapping[str, QueuedJob] | None = None,
    ) -> tuple[int, int]:
        """Publish what an admission admitted and tell the ready set when to come back;
        returns how many jobs were published and how many the admission admitted. `queued`:
        what of the admission a committed transaction moved to QUEUED already
        (`queue_finished`); None to move it here.

        The ready set is written only when a dispatcher must come back and does not already
        know when (the integration still has a backlog, `next_us`, and no admission since the
        last dispatcher's asked for that time or an earlier one: `Admission.wake`), or when
        this dispatcher holds a claim on it to give up. An admission that emptied the backlog
        costs no write there: nothing is left to admit, and any job enqueued later wakes it
        again."""
        if admission.status == "nolimits":
            self.load_limits(integration_id)
            admission = self._admit(integration_id, claim_us)
            queued = None
        published = self._publish(integration_id, admission.job_ids, queued)
        self._metrics.count(
            "pmsq_admissions", len(admission.job_ids), integration_id=integration_id
        )
        if admission.next_us is not None:
            reason = "paused" if admission.status == "paused" else "limits"
            self._metrics.count(
                "pmsq_throttled_admissions", integration_id=integration_id, reason=reason
            )
        if claim_us is not None or (admission.next_us is not None and admission.wake):
            # claim_us -1 never equals a real claim: the earlier of the two times wins.
            self._flow.reschedule(
                integration_id, -1 if claim_us is None else claim_us, admission.next_us
            )
        return published, len(admission.job_ids)

    def load_limits(self, integration_id: str) -> None:
        """Copy the integration's limits from the database to flow control."""
        with self._session_factory() as session:
            integration = JobRepository(session).integration(integration_id)
            if integration is None:
                # Limits of nothing: admit nothing, the jobs fail at claim for lack of it.
                limits = Limits(interval_us=1, tolerance_us=1, concurrency=1)
            else:
                limits = Limits.of(integration, self._settings.rate_margin_ms)
        self._flow.set_limits(integration_id, limits)

    def _publish(
        self,
        integration_id: str,
        job_ids: Sequence[str],
        queued: Mapping[str, QueuedJob] | None = None,
    ) -> int:
        """Move the admitted jobs to QUEUED (one statement for the batch; `queued`: already
        moved, by a committed transaction) and publish them in admission order; give back the
        admission lease of each that was not PENDING."""
        if not job_ids:
            return 0
        if queued is None:
            with self._engine.begin() as connection:
                unpublished = queue_admitted(connection, job_ids, self._clock())
        else:
            unpublished = dict(queued)
        admitted: list[AdmittedJob] = []
        for job_id in job_ids:
            job = unpublished.pop(job_id, None)
            if job is None:
                # Unknown, no longer PENDING, or a duplicate backlog entry: give back the
                # admission lease this admission just took (the job's own claim, if it runs,
                # is another member and stays).
                self._flow.release(integration_id, job_id)
                continue
            admitted.append(
                AdmittedJob(job.id, job.integration_id, job.model, job.action, job.root_job_id)
            )
        for message in admitted:
            self._publisher.publish(message)
        return len(admitted)

    # -- the loop ------------------------------------------------------------------------------

    def tick(self) -> float:
        """One admission pass over the integrations that are due; returns how long to sleep
        before the next."""
        due = self._flow.claim_due(CLAIM_BATCH, CLAIM_S)
        for integration_id in due.integration_ids:
            try:
                self.admit_integration(integration_id, due.claim_us)
            except Exception:
                logger.exception("admission of integration %s failed", integration_id)
        if due.integration_ids:
            return 0.0
        if due.next_us is None:
            return self._settings.dispatch_interval_s
        wait_s = (due.next_us - due.now_us) / 1_000_000
        return max(MIN_SLEEP_S, min(self._settings.dispatch_interval_s, wait_s))

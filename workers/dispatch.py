"""The admission step between the job store and the broker.

A job waits PENDING in the job store and, by id, in its integration's backlog in Redis. The
dispatcher asks flow control which jobs may start now (the atomic `admit.lua`), moves those to
QUEUED and publishes them. It also heals, within about one lease (`PMSQ_JOB_LEASE_S`):
RUNNING jobs whose claim lease lapsed (their worker died or froze) go back to the backlog, QUEUED
jobs whose admission lease lapsed before any worker claimed them (their message died with a
worker) are admitted again, and PENDING jobs missing from Redis (lost between commit and
enqueue, or a flushed Redis) are enqueued again. Every job move is a row-locked transition and
every lease decision an atomic Lua script on Redis's clock (never this host's), so a dispatcher
may run in every worker and in the API at once, and an extra broker message is harmless: it
is dropped at claim.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from pmsq.metrics import MetricsRecorder, NullMetrics
from pmsq.models.base import utcnow
from pmsq.models.enums import JobStatus
from pmsq.models.job import Job
from pmsq.settings import Settings
from pmsq.tracing import traced
from pmsq.workers.aggregator import finish_job
from pmsq.workers.flow.backend import Admission, FlowControl, redis_time
from pmsq.workers.flow.limits import Limits, version_of
from pmsq.workers.publisher import AdmittedJob, Publisher
from pmsq.workers.repository import JobRepository
from pmsq.workers.transitions import transition
from pmsq.workers.webhooks.deliverer import DeliveryPump

logger = logging.getLogger(__name__)

#: Most jobs one store pass touches, so a pass stays short.
BATCH = 500
#: Most jobs one admission call admits for one integration.
ADMIT_BATCH = 50
#: Most integrations one tick claims.
CLAIM_BATCH = 64
#: How long a claimed integration is left to this dispatcher before others may take it.
CLAIM_S = 5.0
#: Shortest sleep of the loop, so a busy ready set does not spin.
MIN_SLEEP_S = 0.0005
#: A PENDING job due this long ago is checked for being missing from its backlog.
ORPHAN_AGE_S = 10.0


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
        self._next_maintenance = 0.0
        self._sweep_cursor: tuple[datetime, str] | None = None
        #: Sends due webhook deliveries off the loop's thread (see `pmsq.workers.webhooks`).
        self._webhooks = DeliveryPump(session_factory, settings, clock, self._metrics)

    @property
    def flow(self) -> FlowControl:
        return self._flow

    # -- admission ---------------------------------------------------------------------------

    def submit(self, integration_id: str, job_ids: Sequence[str], delay_s: float = 0.0) -> int:
        """Put committed PENDING jobs in their backlog and admit what may start at once."""
        if not job_ids:
            return 0
        self._flow.enqueue(integration_id, job_ids, delay_s)
        return self.admit_integration(integration_id) if delay_s <= 0 else 0

    def resubmit_interrupted(self, integration_id: str, job_ids: Sequence[str]) -> int:
        """Put jobs whose run a lost worker interrupted back at the head of their backlog (they
        had their turn already), so they resume within about a lease however long the
        backlog, and admit what may start at once."""
        self._flow.enqueue_many({integration_id: job_ids}, ahead=True)
        return self.admit_integration(integration_id)

    @traced("pmsq.admit")
    def admit_integration(self, integration_id: str, claim_us: int | None = None) -> int:
        """Admit what the integration's limits allow now; returns how many were published."""
        admission = self._admit(integration_id)
        published = self._publish(integration_id, admission.job_ids)
        self._metrics.count(
            "pmsq_admissions", len(admission.job_ids), integration_id=integration_id
        )
        if admission.next_us is not None:
            reason = "paused" if admission.status == "paused" else "limits"
            self._metrics.count(
                "pmsq_throttled_admissions", integration_id=integration_id, reason=reason
            )
        # claim_us -1 never equals a real claim: the earlier of the two times wins.
        self._flow.reschedule(
            integration_id, -1 if claim_us is None else claim_us, admission.next_us
        )
        return published

    def _admit(self, integration_id: str) -> Admission:
        lease_s = self._settings.job_lease_s
        admission = self._flow.admit(integration_id, ADMIT_BATCH, lease_s)
        if admission.status == "nolimits":
            self.load_limits(integration_id)
            admission = self._flow.admit(integration_id, ADMIT_BATCH, lease_s)
        return admission

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

    def _publish(self, integration_id: str, job_ids: Sequence[str]) -> int:
        if not job_ids:
            return 0
        now = self._clock()
        admitted: list[AdmittedJob] = []
        stale: list[str] = []
        with self._session_factory.begin() as session:
            repo = JobRepository(session)
            for job_id in job_ids:
                job = repo.lock(job_id)
                if job is None or job.status != JobStatus.PENDING.value:
                    stale.append(job_id)
                    continue
                transition(job, JobStatus.QUEUED, now)
                job.due_at = None
                admitted.append(
                    AdmittedJob(job.id, job.integration_id, job.model, job.action, job.root_job_id)
                )
        for job_id in stale:
            # A duplicate backlog entry: give back the admission lease this admission just
            # took (the job's own claim, if it runs, is another member and stays).
            self._flow.release(integration_id, job_id)
        for message in admitted:
            self._publisher.publish(message)
        return len(admitted)

    # -- the loop ------------------------------------------------------------------------------

    def tick(self) -> float:
        """One pass of the loop; returns how long to sleep before the next."""
        due = self._flow.claim_due(CLAIM_BATCH, CLAIM_S)
        for integration_id in due.integration_ids:
            try:
                self.admit_integration(integration_id, due.claim_us)
            except Exception:
                logger.exception("admission of integration %s failed", integration_id)
        if time.monotonic() >= self._next_maintenance:
            self._next_maintenance = time.monotonic() + self._settings.maintenance_interval_s
            self.maintain()
        if due.integration_ids:
            return 0.0
        if due.next_us is None:
            return self._settings.dispatch_interval_s
        wait_s = (due.next_us - due.now_us) / 1_000_000
        return max(MIN_SLEEP_S, min(self._settings.dispatch_interval_s, wait_s))

    def maintain(self) -> None:
        """The healing passes; cheap enough to run every few seconds in every dispatcher."""
        self.reclaim_expired_leases()
        self.requeue_stale_queued()
        self.enqueue_orphans()
        self.repair_ready()
        self.refresh_limits()
        self._webhooks.kick()

    # -- healing -------------------------------------------------------------------------------

    def reclaim_expired_leases(self) -> int:
        """RUNNING jobs whose claim lease lapsed on Redis's clock go back to the backlog.

        The database's lease (written from Redis's clock by the claim and the heartbeat) only
        picks the candidates; the decision is `reclaim.lua`'s, made under the job's row lock,
        and it takes the lease away in the same step, so the old worker is fenced out before
        the job can be claimed again. A host whose clock is off reclaims nothing live."""
        now = self._clock()
        redis_now = redis_time(self._flow.now_us())
        with self._session_factory() as session:
            expired = list(JobRepository(session).expired_running_ids(redis_now, BATCH))
        requeue: dict[str, list[str]] = defaultdict(list)
        for job_id in expired:
            with self._session_factory.begin() as session:
                job = JobRepository(session).lock(job_id)
                if job is None or job.status != JobStatus.RUNNING.value:
                    continue
                if not self._flow.reclaim(job.integration_id, job.id, job.deliveries):
                    continue  # its worker renews it: the database's lease lags behind
                logger.warning("job %s: lease expired, its worker is presumed lost", job.id)
                if job.unrecorded_claims >= self._settings.max_deliveries:
                    self._fail_poison(session, job, now)
                    continue
                self._back_to_pending(job, now)
                job.outcome_unknown = True
                requeue[job.integration_id].append(job.id)
        for integration_id, job_ids in requeue.items():
            self.resubmit_interrupted(integration_id, job_ids)
        return sum(len(ids) for ids in requeue.values())

    def requeue_stale_queued(self) -> int:
        """QUEUED jobs whose admission lease lapsed before any worker claimed them (their
        message was lost, e.g. with a killed worker's prefetch) go through admission again.

        Candidates are QUEUED for at least a lease by this host's clock; the decision is
        Redis's (the admission lease is no longer live), under the row lock, so a job whose
        claim is under way is left alone, and a duplicate message is dropped at claim."""
        now = self._clock()
        before = now - timedelta(seconds=self._settings.job_lease_s)
        requeue: dict[str, list[str]] = defaultdict(list)
        with self._session_factory() as session:
            candidates = list(JobRepository(session).stale_queued_ids(before, BATCH))
        for job_id in candidates:
            with self._session_factory.begin() as session:
                job = JobRepository(session).lock(job_id)
                if job is None or job.status != JobStatus.QUEUED.value:
                    continue
                if self._flow.admission_live(job.integration_id, job.id):
                    continue
                logger.warning("job %s: admitted but never claimed, admitted again", job.id)
                self._back_to_pending(job, now)
                requeue[job.integration_id].append(job.id)
        for integration_id, job_ids in requeue.items():
            self.resubmit_interrupted(integration_id, job_ids)
        return sum(len(ids) for ids in requeue.values())

    def enqueue_orphans(self) -> int:
        """PENDING jobs long due but absent from their backlog are put back in it.

        Walks the due PENDING jobs a page per pass with a cursor, so a long legitimate backlog
        is not re-read every pass. A job that looks missing is re-checked under its row lock
        (still PENDING) and enqueued only if it is neither in its backlog nor admitted
        (`enqueue_orphan.lua`), so an admission racing the sweep never yields a second copy.
        """
        before = self._clock() - timedelta(seconds=ORPHAN_AGE_S)
        with self._session_factory() as session:
            page = JobRepository(session).due_pending_page(before, self._sweep_cursor, BATCH)
            rows = [(job.id, job.integration_id, job.due_at) for job in page]
        self._sweep_cursor = (rows[-1][2], rows[-1][0]) if len(rows) == BATCH else None  # type: ignore[assignment]
        by_integration: dict[str, list[str]] = defaultdict(list)
        for job_id, integration_id, _due in rows:
            by_integration[integration_id].append(job_id)
        found = 0
        for integration_id, job_ids in by_integration.items():
            present = self._flow.in_backlog(integration_id, job_ids)
            missing = [j for j, ok in zip(job_ids, present, strict=True) if not ok]
            enqueued = [j for j in missing if self._enqueue_orphan(j)]
            if enqueued:
                logger.warning(
                    "%d jobs of %s were missing from Redis", len(enqueued), integration_id
                )
                self.admit_integration(integration_id)
                found += len(enqueued)
        return found

    def repair_ready(self) -> int:
        """Integrations with a backlog but missing from the ready set are put back in it."""
        missing = self._flow.repair_ready()
        if missing:
            logger.warning("%d integrations were missing from the ready set", missing)
        return missing

    def refresh_limits(self) -> int:
        """Reload the limits of every known integration whose limits in Redis are older than
        the job store's (`updated_at`): a lost write, or two PUTs racing, cannot leave stale
        limits for good. Returns how many were reloaded."""
        known = self._flow.known_integrations()
        stale = 0
        for start in range(0, len(known), BATCH):
            ids = known[start : start + BATCH]
            with self._session_factory() as session:
                versions = JobRepository(session).integration_versions(ids)
            in_redis = self._flow.limits_versions(ids)
            for integration_id, redis_version in zip(ids, in_redis, strict=True):
                updated_at = versions.get(integration_id)
                if updated_at is None:
                    continue
                if redis_version is None or redis_version < version_of(updated_at):
                    self.load_limits(integration_id)
                    stale += 1
        return stale

    def _enqueue_orphan(self, job_id: str) -> bool:
        with self._session_factory.begin() as session:
            job = JobRepository(session).lock(job_id)
            if job is None or job.status != JobStatus.PENDING.value:
                return False
            return self._flow.enqueue_orphan(job.integration_id, job.id)

    def _back_to_pending(self, job: Job, now: datetime) -> None:
        transition(job, JobStatus.PENDING, now)
        job.due_at = now
        job.lease_expires_at = None

    def _fail_poison(self, session: Session, job: Job, now: datetime) -> None:
        self._metrics.count("pmsq_poison_jobs", integration_id=job.integration_id)
        finish_job(
            session,
            job,
            JobStatus.FAILURE,
            now,
            max_jobs_per_tree=self._settings.max_jobs_per_tree,
            error=poison_message(job.unrecorded_claims),
        )


def poison_message(claims: int) -> str:
    return (
        f"job was delivered {claims} times without finishing (its worker was lost each "
        "time); giving up (PMSQ_MAX_DELIVERIES)"
    )

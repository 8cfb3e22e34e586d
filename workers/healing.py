"""Healing: what a lost worker, a lost message or a Redis that lost its data left behind comes
back within about one lease (`PMSQ_JOB_LEASE_S`).

RUNNING jobs whose claim lease lapsed (their worker died or froze) go back to the head of their
backlog, or fail as poison after `PMSQ_MAX_DELIVERIES` lost deliveries; QUEUED jobs whose
admission lease lapsed before any worker claimed them (their message died with a worker) are
admitted again; PENDING jobs missing from Redis (lost between commit and enqueue, or a flushed
Redis) are enqueued again; a lost ready set is rebuilt and stale limits reloaded. Each pass is
cheap enough to run every few seconds in every worker: candidates come from the job store, every
decision is an atomic Lua script on Redis's clock under the job's row lock, so two healers never
act twice on one job and an extra broker message is dropped at claim.

What costs as much as there are integrations (the ready set's repair and the limits' check,
each reading every known integration) goes round in pages, so an idle worker's passes cost the
same with 10 or 10,000 integrations: each pass compares the limits of `CHECK_PAGE` known
integrations with the job store, and the ready set is repaired once per round of them. A round
takes ceil(known / `CHECK_PAGE`) passes (at the default 2 s a pass, under 4 minutes for 10,000
integrations); a pass that finds jobs missing from Redis (Redis lost data) repairs the ready set
and checks every integration's limits at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from pmsq.models.base import utcnow
from pmsq.models.enums import JobStatus
from pmsq.models.job import Job
from pmsq.settings import Settings
from pmsq.workers.aggregator import finish_job
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.backend import redis_time
from pmsq.workers.flow.limits import version_of
from pmsq.workers.repository import JobRepository
from pmsq.workers.transitions import requeue

logger = logging.getLogger(__name__)

#: Most jobs one store pass touches, so a pass stays short.
BATCH = 500
#: A PENDING job due this long ago is checked for being missing from its backlog.
ORPHAN_AGE_S = 10.0
#: Known integrations whose limits one pass checks (the ready set is repaired once per round).
CHECK_PAGE = 100


class Healer:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        dispatcher: Dispatcher,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._dispatcher = dispatcher
        self._flow = dispatcher.flow
        self._metrics = dispatcher.metrics
        self._settings = settings
        self._clock = clock
        self._sweep_cursor: tuple[datetime, str] | None = None
        #: The known integrations of the current round of checks, and how far it got.
        self._round: list[str] = []
        self._round_at = 0

    def heal(self) -> None:
        """Every healing pass, in order."""
        self.reclaim_expired_leases()
        self.requeue_stale_queued()
        if self.enqueue_orphans():
            # Jobs were missing from Redis: it lost data, so more may be missing. Check all now.
            self.repair_ready()
            self.refresh_limits()
            self._round_at = len(self._round)  # and start a fresh round next pass
        else:
            self.check_next_page()

    def check_next_page(self) -> int:
        """One page of the round of checks: the ready set repaired when a round starts, then
        the limits of the next `CHECK_PAGE` known integrations. Returns the limits reloaded."""
        if self._round_at >= len(self._round):
            self._round = self._flow.known_integrations()
            self._round_at = 0
            self.repair_ready()
        page = self._round[self._round_at : self._round_at + CHECK_PAGE]
        self._round_at += CHECK_PAGE
        return self._refresh_limits_of(page)

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
        back: dict[str, list[str]] = defaultdict(list)
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
                requeue(job, now)
                job.outcome_unknown = True
                back[job.integration_id].append(job.id)
        for integration_id, job_ids in back.items():
            self._dispatcher.resubmit_interrupted(integration_id, job_ids)
        return sum(len(ids) for ids in back.values())

    def requeue_stale_queued(self) -> int:
        """QUEUED jobs whose admission lease lapsed before any worker claimed them (their
        message was lost, e.g. with a killed worker's prefetch) go through admission again.

        Candidates are QUEUED for at least a lease by this host's clock; the decision is
        Redis's (the admission lease is no longer live), under the row lock, so a job whose
        claim is under way is left alone, and a duplicate message is dropped at claim."""
        now = self._clock()
        before = now - timedelta(seconds=self._settings.job_lease_s)
        back: dict[str, list[str]] = defaultdict(list)
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
                requeue(job, now)
                back[job.integration_id].append(job.id)
        for integration_id, job_ids in back.items():
            self._dispatcher.resubmit_interrupted(integration_id, job_ids)
        return sum(len(ids) for ids in back.values())

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
                self._dispatcher.admit_integration(integration_id)
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
        limits for good. Returns how many were reloaded. (A pass checks one page of them:
        `check_next_page`.)"""
        known = self._flow.known_integrations()
        return sum(
            self._refresh_limits_of(known[start : start + BATCH])
            for start in range(0, len(known), BATCH)
        )

    def _refresh_limits_of(self, ids: list[str]) -> int:
        if not ids:
            return 0
        with self._session_factory() as session:
            versions = JobRepository(session).integration_versions(ids)
        in_redis = self._flow.limits_versions(ids)
        stale = 0
        for integration_id, redis_version in zip(ids, in_redis, strict=True):
            updated_at = versions.get(integration_id)
            if updated_at is None:
                continue
            if redis_version is None or redis_version < version_of(updated_at):
                self._dispatcher.load_limits(integration_id)
                stale += 1
        return stale

    def _enqueue_orphan(self, job_id: str) -> bool:
        with self._session_factory.begin() as session:
            job = JobRepository(session).lock(job_id)
            if job is None or job.status != JobStatus.PENDING.value:
                return False
            return self._flow.enqueue_orphan(job.integration_id, job.id)

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

"""Runs one job: claim -> execute at the PMS -> record the outcome (and spawn children).

Claim and record are short transactions; the PMS call happens between them with no
transaction open. The record's transaction also takes what comes next (the claim's slot given
back, the next waiting jobs admitted and moved to QUEUED), published once it committed. The
claim takes a delivery number (the fencing token) and, under the job's row lock, the claim
lease `job_id:delivery` in Redis. Before every PMS request the pacer proves on Redis's clock
that this claim still holds that lease; a worker that lost it (paused past its lease, or the
job handed to a newer delivery) stops without sending (`FencedOut`). The record step only
applies an outcome if the job is still RUNNING under the same delivery, so a worker that
outlived its lease cannot overwrite the outcome of the job's next run either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from pmsq.errors import FencedOut, PmsError, PmsThrottled
from pmsq.logs import log_context
from pmsq.metrics import MetricsRecorder, NullMetrics
from pmsq.models.base import new_id, utcnow
from pmsq.models.db import write_engine
from pmsq.models.enums import JobStatus
from pmsq.models.job import Job
from pmsq.pms.connector import Exchange, Step, StepResult
from pmsq.pms.profiles import CREATE, UPDATE
from pmsq.settings import Settings
from pmsq.workers.aggregator import FinishedRoot, finish_job, finish_running_root
from pmsq.workers.backoff import retry_delay_s
from pmsq.workers.connectors import ConnectorFactory, IntegrationSnapshot
from pmsq.workers.copies import VersionedCopies
from pmsq.workers.dispatch import Dispatcher, FinishedRun
from pmsq.workers.flow.backend import Admission, redis_time
from pmsq.workers.healing import poison_message
from pmsq.workers.heartbeat import LeaseHeartbeat, LeaseRenewer
from pmsq.workers.pacing import PaceLatency, RequestPacer
from pmsq.workers.record_cache import EnumMappingCache, record_key, write_record
from pmsq.workers.repository import (
    JobRepository,
    StartedRun,
    add_job_logs,
    move_job_if,
    set_lease,
    start_run,
)
from pmsq.workers.steps import Claim, Failed, GrantedSlot, Outcome, StepHandlers, Succeeded
from pmsq.workers.transitions import requeue, requeued
from pmsq.workers.webhooks.subscriptions import Subscription, SubscriptionCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    """What `record` did: the job's status after it, and what flow control must follow up."""

    status: JobStatus | None
    #: False when this claim no longer held the job (fenced out, or already finished).
    applied: bool
    spawned: list[str] = field(default_factory=list)
    retry_delay_s: float = 0.0
    pms_headers: dict[str, str] = field(default_factory=dict)
    #: Set when this outcome completed the whole write.
    write_latency_s: float | None = None
    #: A sync job's own verdict (its execution's status).
    sync_status: str | None = None
    #: What flow control admitted in the record's transaction, to publish after its commit.
    finished: FinishedRun | None = None


class _NoSlot(Exception):
    """Raised inside a claim's transaction to roll it back: Redis had no slot for its lease."""


class IntegrationSnapshots:
    """This process's copies of the integrations its jobs ran for, each with its version.

    A claim reads the integration's `updated_at` in its own UPDATE and reloads the integration
    only when that changed, so no job runs with credentials, a base_url or a vendor older than
    those committed before its claim (the same staleness as reading the row in the claim:
    none), at no extra statement. Every change of an integration moves its `updated_at`: the
    API sets it, and the limits in Redis are versioned by it too. At most `MAX_COPIES` are
    kept, the oldest loaded dropped first.
    """

    def __init__(self) -> None:
        self._copies: VersionedCopies[str, IntegrationSnapshot] = VersionedCopies()

    def get(
        self, connection: Connection, integration_id: str, version: datetime | None
    ) -> IntegrationSnapshot:
        """The integration as the transaction of `connection` reads it, when it is at
        `version` (read again, in that transaction, when it moved)."""
        snapshot = self._copies.get(integration_id, version)
        if snapshot is not None:
            return snapshot
        with Session(bind=connection) as session:
            integration = JobRepository(session).integration(integration_id)
            assert integration is not None  # enforced by the foreign key
            snapshot = IntegrationSnapshot.of(integration)
            self._copies.keep(integration_id, integration.updated_at, snapshot)
        return snapshot


class RedisClockEstimate:
    """Redis's clock as this process last heard it (a lease grant), run on by the monotonic
    clock since.

    A claim stamps the lease it expects Redis to grant in its UPDATE, and needs a second
    statement only when Redis's answer says the guess was off by more than
    `LEASE_STAMP_SLACK` of the lease (a first claim, a Redis clock that jumped, a worker
    paused mid-claim). The job store's lease only picks the healer's candidates; whether a
    lease lapsed is always Redis's decision, so a guess a little off moves nothing but when
    a dead worker's job is looked at."""

    #: How far from Redis's lease (a fraction of the lease) the job store's may be left.
    LEASE_STAMP_SLACK = 0.01

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._heard: tuple[int, float] | None = None

    def heard(self, now_us: int) -> None:
        """Redis said its time was `now_us` (microseconds), just now."""
        self._heard = (now_us, self._monotonic())

    def lease_expiry(self, lease_s: float) -> datetime | None:
        """When a lease granted now would end on Redis's clock; None before Redis was heard."""
        if self._heard is None:
            return None
        now_us, at_s = self._heard
        return redis_time(now_us) + timedelta(seconds=self._monotonic() - at_s + lease_s)

    def close_enough(self, guessed: datetime | None, granted: datetime, lease_s: float) -> bool:
        """Whether a stamped guess may stand for the lease Redis granted."""
        if guessed is None:
            return False
        return abs((granted - guessed).total_seconds()) <= lease_s * self.LEASE_STAMP_SLACK


class JobRunner:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        connectors: ConnectorFactory,
        dispatcher: Dispatcher,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        metrics: MetricsRecorder | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`monotonic`: this host's elapsed-time clock, which judges whether a request slot
        granted on Redis's clock is still fresh when the request leaves."""
        self._session_factory = session_factory
        #: What the claim's and the record's transactions run on (plain connections).
        self._engine = write_engine(session_factory)
        self._metrics = metrics or NullMetrics()
        self._monotonic = monotonic
        self._connectors = connectors
        self._dispatcher = dispatcher
        self._flow = dispatcher.flow
        self._settings = settings
        self._clock = clock
        self._steps = StepHandlers(session_factory, settings, clock)
        self._pace_latency = PaceLatency()
        self._integrations = IntegrationSnapshots()
        self._subscriptions = SubscriptionCache()
        self._enum_mappings = EnumMappingCache()
        self._renewer = LeaseRenewer()
        self._redis_clock = RedisClockEstimate(monotonic)

    def run(self, job_id: str) -> JobStatus | None:
        """Run the job if it is QUEUED; returns its status afterwards, None if not run."""
        with log_context(job_id=job_id):
            claim = self.claim(job_id)
        if claim is None:
            return None
        with log_context(
            job_id=job_id, root_job_id=claim.root_job_id, integration_id=claim.integration.id
        ):
            return self._run_claimed(claim)

    def _run_claimed(self, claim: Claim) -> JobStatus | None:
        exchanges: list[Exchange] = []
        started = time.monotonic()
        heartbeat = LeaseHeartbeat(
            flow=self._flow,
            session_factory=self._session_factory,
            integration_id=claim.integration.id,
            job_id=claim.job_id,
            delivery=claim.delivery,
            lease_s=self._settings.job_lease_s,
            renewer=self._renewer,
        )
        try:
            with heartbeat:
                outcome = self.execute(claim, exchanges.append, heartbeat.lost)
        except FencedOut as fenced:
            self._fenced_out(claim, exchanges, fenced)
            return None
        recorded = self.record(claim, exchanges, outcome)
        self._after_record(claim, outcome, recorded)
        self._observe(claim, outcome, recorded, time.monotonic() - started)
        return recorded.status

    def _fenced_out(self, claim: Claim, exchanges: list[Exchange], fenced: FencedOut) -> None:
        """The claim lost its lease before a request: nothing was sent for it, no outcome is
        recorded and nothing is released (the slot and the job are someone else's now, or come
        back through the lease reclaim). Requests it did send before are kept in the job log."""
        logger.warning("%s; stopped without sending", fenced.message)
        if exchanges:
            with self._session_factory.begin() as session:
                JobRepository(session).add_logs(_log_rows(claim, exchanges, self._clock()))
        self._metrics.count(
            "pmsq_job_outcomes", integration_id=claim.integration.id, outcome="fenced"
        )

    def _observe(
        self, claim: Claim, outcome: Outcome, recorded: Recorded, duration_s: float
    ) -> None:
        integration_id = claim.integration.id
        if isinstance(outcome, Failed) and isinstance(outcome.error, PmsThrottled):
            self._metrics.count("pmsq_pms_429", integration_id=integration_id)
        label = "fenced" if not recorded.applied else (recorded.status or "none").lower()
        if recorded.status == JobStatus.PENDING:
            label = "retry"
        self._metrics.count("pmsq_job_outcomes", integration_id=integration_id, outcome=label)
        self._metrics.observe("pmsq_job_duration_seconds", duration_s)
        if recorded.write_latency_s is not None:
            self._metrics.observe("pmsq_write_latency_seconds", recorded.write_latency_s)
        self._steps.handler_for(claim.step).observe(
            integration_id, recorded.status, recorded.sync_status, self._metrics
        )

    def _after_record(self, claim: Claim, outcome: Outcome, recorded: Recorded) -> None:
        """Flow-control side of an outcome, once it is committed: the jobs its transaction
        admitted and queued are published (`record`)."""
        # A 429 paused the integration when it was heard (`execute`).
        if not recorded.applied:
            # Fenced out: the slot belongs to the job's newer delivery.
            if recorded.pms_headers:
                self._flow.record_pms_limits(claim.integration.id, recorded.pms_headers)
            return
        if recorded.finished is not None:
            self._dispatcher.publish_finished(recorded.finished)

    def _after_final(self, integration_id: str, job_id: str) -> None:
        """A job that ended at claim (poison) gives back its admission lease."""
        self._metrics.count("pmsq_poison_jobs", integration_id=integration_id)
        self._flow.release(integration_id, job_id)
        self._dispatcher.admit_integration(integration_id)

    def claim(self, job_id: str) -> Claim | None:
        """Take the job if it is QUEUED: RUNNING, with a new delivery number and its lease.

        One UPDATE moves the job to RUNNING, stamps the lease it expects Redis to grant
        (`RedisClockEstimate`) and locks its row; under that lock the claim takes its lease in
        Redis, so deliveries take leases in order, corrects the stamp if Redis's answer says it
        was off, and commits. When the admission lease lapsed while the message waited in the
        broker and no slot is free, the claim is rolled back and the job goes back to the head
        of its backlog untouched (no attempt, no delivery).

        The transaction runs on a plain connection: a claim is one statement, and a Session
        around it cost more than the statement. The rare paths (the UPDATE matched nothing,
        the integration changed) join the same transaction with a Session of their own."""
        now = self._clock()
        lease_s = self._settings.job_lease_s
        poisoned: Job | None = None
        guessed = self._redis_clock.lease_expiry(lease_s)
        try:
            with self._engine.begin() as connection:
                started: StartedRun | Job | None = start_run(
                    connection, job_id, now, self._settings.max_deliveries, guessed
                )
                if started is None:
                    started = self._start_locked(connection, job_id, now, guessed)
                if isinstance(started, Job):
                    poisoned = started
                elif started is not None:
                    integration = self._integrations.get(
                        connection, started.integration_id, started.integration_version
                    )
                    asked_s = self._monotonic()
                    held = self._flow.hold(
                        started.integration_id, job_id, started.deliveries, lease_s, True
                    )
                    self._pace_latency.observe(self._monotonic() - asked_s)
                    self._redis_clock.heard(held.now_us)
                    if not held.held:
                        raise _NoSlot
                    expires_at = redis_time(held.now_us) + timedelta(seconds=lease_s)
                    if not self._redis_clock.close_enough(guessed, expires_at, lease_s):
                        set_lease(connection, job_id, expires_at, now)
                    return Claim(
                        job_id=started.id,
                        root_job_id=started.root_job_id,
                        delivery=started.deliveries,
                        attempt=started.attempts,
                        step=_step_of(started),
                        integration=integration,
                        first_slot=None if held.slot is None else GrantedSlot(held.slot, asked_s),
                    )
        except _NoSlot:
            self._give_back(job_id, now)
            return None
        if poisoned is not None:
            self._after_final(poisoned.integration_id, poisoned.id)
        return None

    def _start_locked(
        self,
        connection: Connection,
        job_id: str,
        now: datetime,
        lease_expires_at: datetime | None,
    ) -> StartedRun | Job | None:
        """Why the claim's UPDATE matched nothing, asked under the row lock: an unknown job or
        a duplicate message (None; the message is dropped), or a poison message (the job,
        failed here). A job that became QUEUED since (PostgreSQL reads each statement's own
        snapshot) is started after all.

        Runs in the claim's transaction, through a Session that joins it: what the Session
        writes is flushed here and committed (or rolled back) with the claim."""
        with Session(bind=connection, expire_on_commit=False) as session:
            repo = JobRepository(session)
            job = repo.lock(job_id)
            if job is None:
                logger.warning("job %s: not in the job store, message dropped", job_id)
                return None
            if job.status != JobStatus.QUEUED.value:
                logger.info("job %s: is %s, duplicate message dropped", job_id, job.status)
                return None
            if job.unrecorded_claims >= self._settings.max_deliveries:
                self._finish(
                    session, job, JobStatus.FAILURE, now, poison_message(job.unrecorded_claims)
                )
                session.flush()
                return job
        return start_run(connection, job_id, now, self._settings.max_deliveries, lease_expires_at)

    def _give_back(self, job_id: str, now: datetime) -> None:
        """A claim that found no free slot: the job goes back to PENDING, at the head of its
        backlog (it was admitted once, it keeps its turn). Unless, in the instant between the
        claim's rollback and this, another delivery claimed it or the healing sweep handed it
        out again: then it is theirs."""
        with self._session_factory.begin() as session:
            job = JobRepository(session).lock(job_id)
            if job is None or job.status != JobStatus.QUEUED.value:
                return
            requeue(job, now)
            integration_id = job.integration_id
        logger.warning("job %s: no concurrency slot at claim, back to the backlog", job_id)
        self._dispatcher.resubmit_interrupted(integration_id, [job_id])

    def execute(
        self,
        claim: Claim,
        log: Callable[[Exchange], None],
        lost: threading.Event | None = None,
    ) -> Outcome:
        """Perform the claim's step at the PMS. Raises `FencedOut` (before sending anything
        more) when the claim lost its lease; every other error becomes a `Failed` outcome."""
        try:
            pacer = RequestPacer(
                self._flow,
                claim,
                self._dispatcher.load_limits,
                lost,
                stale_after_s=self._settings.rate_margin_ms / 2 / 1000,
                monotonic=self._monotonic,
                latency=self._pace_latency,
            )
            connector, profile = self._connectors.build(claim.integration, pacer.wait_for_slot)
            try:
                return self._steps.handler_for(claim.step).run(claim, connector, profile, log)
            finally:
                pacer.give_back_unused()
        except PmsThrottled as throttled:
            self._pause(claim.integration.id, throttled)
            return Failed(throttled)
        except PmsError as error:
            return Failed(error)
        except FencedOut:
            raise
        except Exception as exc:  # a bug or an unexpected PMS answer: fail, don't loop
            logger.exception("job %s: unexpected error", claim.job_id)
            return Failed(PmsError(f"internal error: {type(exc).__name__}", retryable=False))

    def _pause(self, integration_id: str, throttled: PmsThrottled) -> None:
        """Pause the integration the moment the PMS said 429, before the outcome is recorded:
        the other jobs of the integration are pacing meanwhile, and a request they send
        before the pause lands inside the PMS's Retry-After. What the PMS said holds whoever
        heard it. A pause that fails (Redis out) is logged; the outcome is recorded anyway."""
        try:
            self._flow.pause(integration_id, throttled.retry_after_s or 0.0)
        except Exception as exc:
            logger.warning("pausing after a 429 failed: %s", type(exc).__name__)

    def record(self, claim: Claim, exchanges: list[Exchange], outcome: Outcome) -> Recorded:
        """Store the exchanges and apply the outcome, if this claim still holds the job.

        The commonest outcomes are applied by one UPDATE guarded on the claim (`_record_fast`):
        a root job's success or failure that spawns nothing, any job's retry. The UPDATE reads
        back the versions of the account's webhook endpoints and of the integration's enum
        mappings: while neither moved, this process's copies of them are what the transaction
        would read, and no query asks for them again. A root job with no children is then
        recorded in three statements: its logs, its UPDATE and the record cache's upsert (plus
        the outbox's rows, and what their payloads read, when someone listens). Any other
        outcome, and one whose UPDATE matched nothing, locks the job and applies it to the
        loaded rows (`_record_locked`), which also tells a claim that lost the job.

        An applied outcome is followed, in the same transaction, by what flow control makes of
        it (`Dispatcher.finish_run`: the claim's slot back, a retry or the children into the
        backlog, the next waiting jobs admitted) and by the UPDATE moving those admitted to
        QUEUED (`Dispatcher.queue_finished`): the run costs one transaction, not two. They are
        published once it committed (`Recorded.finished`, `_after_record`). Should the
        transaction roll back after flow control heard of it, nothing can run that should not
        (`Dispatcher.finish_run` says why): the job stays RUNNING under this claim and comes
        back through the healer, as after a worker lost before its record. On SQLite the
        transaction holds the write lock during that round trip, as the claim does during
        its own.

        A failure of flow control (Redis down or restarting) never rolls back the outcome: it
        commits without the admission, then the failure is raised, as it was when flow control
        was told after the commit. The claim's lease then lapses by itself, and the orphan
        sweep puts a retry or children missing from their backlog back in it. A claim that no
        longer held the job tells flow control nothing: its slot is the newer delivery's."""
        now = self._clock()
        headers = exchanges[-1].response_headers if exchanges else {}
        unfinished: Exception | None = None
        with self._engine.begin() as connection:
            # The ORM only where it is needed (a listener, a sync's execution, the locked
            # path): a Session on the transaction's connection, which it joins when used.
            with Session(bind=connection, expire_on_commit=False) as session:
                add_job_logs(connection, _log_rows(claim, exchanges, now))
                recorded = self._record_fast(connection, session, claim, outcome, now, headers)
                if recorded is None:
                    recorded = self._record_locked(session, claim, outcome, now, headers)
                if session.in_transaction():  # used: its changes into the transaction
                    session.commit()
            if recorded.applied:
                try:
                    admission = self._finish_run(claim, recorded)
                except Exception as exc:  # flow control's: the outcome commits regardless
                    unfinished = exc
                else:
                    finished = self._dispatcher.queue_finished(
                        connection, claim.integration.id, admission
                    )
                    recorded = replace(recorded, finished=finished)
        if unfinished is not None:
            raise unfinished
        return recorded

    def _finish_run(self, claim: Claim, recorded: Recorded) -> Admission:
        """Tell flow control the applied outcome (`Dispatcher.finish_run`)."""
        retry_delay_s = recorded.retry_delay_s if recorded.status == JobStatus.PENDING else None
        return self._dispatcher.finish_run(
            claim.integration.id,
            claim.job_id,
            claim.delivery,
            retry_delay_s,
            recorded.spawned,
            recorded.pms_headers,
        )

    def _record_fast(
        self,
        connection: Connection,
        session: Session,
        claim: Claim,
        outcome: Outcome,
        now: datetime,
        headers: dict[str, str],
    ) -> Recorded | None:
        """The outcome in one UPDATE guarded on what deciding it read of the job: the claim's
        copies (its attempts, its outcome_unknown), good only while the job is RUNNING under
        the claim's delivery, which the same UPDATE checks. None, nothing changed, when it
        matched nothing or the outcome needs more than one row (children, a child's root)."""
        # Fencing, and what the decision below reads of the job (its created_at, the write's
        # acceptance, never changes): the job is still as the claim left it.
        fence = {
            "deliveries": claim.delivery,
            "attempts": claim.attempt,
            "outcome_unknown": claim.step.outcome_unknown,
        }
        is_root = claim.job_id == claim.root_job_id
        if isinstance(outcome, Failed):
            accepted_at = claim.step.accepted_at
            if accepted_at is None:
                return None
            failure = self._judge(
                outcome.error, claim.attempt, accepted_at, claim.step.outcome_unknown, now
            )
            also = {
                "unrecorded_claims": 0,
                "attempts": failure.attempts,
                "outcome_unknown": failure.outcome_unknown,
            }
            if failure.gave_up is None:
                values = requeued(claim.job_id, JobStatus.RUNNING, now, failure.due_at(now))
                values.update(also, error=outcome.error.message)
                guard = {**fence, "status": JobStatus.RUNNING.value}
                if move_job_if(connection, claim.job_id, guard, values) is None:
                    return None
                return Recorded(JobStatus.PENDING, True, [], failure.delay_s, headers)
            if not is_root:
                return None
            finished = self._finish_root(
                connection,
                session,
                claim,
                JobStatus.FAILURE,
                now,
                fence,
                also,
                error=failure.gave_up,
            )
            return None if finished is None else self._recorded(finished, now, headers)
        if not is_root or outcome.children:
            return None
        created = outcome.result.created_record_id
        also = {"unrecorded_claims": 0}
        finished = self._finish_root(
            connection,
            session,
            claim,
            JobStatus.SUCCESS,
            now,
            fence,
            also,
            created_record_id=created,
        )
        if finished is None:
            return None
        self._cache_written_record(
            connection,
            session,
            claim.integration.id,
            claim.step.model,
            claim.step.action,
            outcome.result,
            now,
            finished.integration_version,
        )
        return self._recorded(finished, now, headers, outcome.sync_status)

    def _finish_root(
        self,
        connection: Connection,
        session: Session,
        claim: Claim,
        status: JobStatus,
        now: datetime,
        fence: dict[str, Any],
        also: dict[str, Any],
        error: str | None = None,
        created_record_id: str | None = None,
    ) -> FinishedRoot | None:
        def listeners(account_id: str, version: int | None) -> Sequence[Subscription]:
            return self._subscriptions.get(session, account_id, version)

        return finish_running_root(
            connection,
            session,
            claim.job_id,
            status,
            now,
            expected=fence,
            also=also,
            listeners=listeners,
            error=error,
            created_record_id=created_record_id,
        )

    @staticmethod
    def _recorded(
        finished: FinishedRoot,
        now: datetime,
        headers: dict[str, str],
        sync_status: str | None = None,
    ) -> Recorded:
        latency_s = (now - finished.accepted_at).total_seconds() if finished.complete else None
        return Recorded(finished.status, True, [], 0.0, headers, latency_s, sync_status)

    def _record_locked(
        self,
        session: Session,
        claim: Claim,
        outcome: Outcome,
        now: datetime,
        headers: dict[str, str],
    ) -> Recorded:
        """The outcome applied to the job locked and loaded, and its root's (`finish_job`)."""
        repo = JobRepository(session)
        locked = repo.lock_with_versions(claim.job_id)
        if locked is None or locked.job.status != JobStatus.RUNNING.value:
            return Recorded(None, applied=False, pms_headers=headers)
        job = locked.job
        if job.deliveries != claim.delivery:
            logger.warning("job %s: lease lost to a newer delivery, outcome dropped", job.id)
            return Recorded(None, applied=False, pms_headers=headers)
        # Read (when not kept) before the job changes: no flush of it ahead of the commit.
        subscribed = self._subscriptions.get(session, job.account_id, locked.webhooks_version)
        job.unrecorded_claims = 0
        if isinstance(outcome, Succeeded):
            self._cache_written_record(
                session.connection(),
                session,
                job.integration_id,
                job.model,
                job.action,
                outcome.result,
                now,
                locked.integration_version,
            )
            spawned = finish_job(
                session,
                job,
                JobStatus.SUCCESS,
                now,
                max_jobs_per_tree=self._settings.max_jobs_per_tree,
                created_record_id=outcome.result.created_record_id,
                children=outcome.children,
                subscribed=subscribed,
            )
            return Recorded(
                JobStatus(job.status),
                True,
                [child.id for child in spawned],
                0.0,
                headers,
                _write_latency_s(session, job, now),
                outcome.sync_status,
            )
        delay_s = self._apply_failure(session, job, outcome.error, now, subscribed)
        return Recorded(
            JobStatus(job.status),
            True,
            [],
            delay_s,
            headers,
            _write_latency_s(session, job, now),
        )

    def _cache_written_record(
        self,
        connection: Connection,
        session: Session,
        integration_id: str,
        model: str,
        action: str,
        result: StepResult,
        now: datetime,
        integration_version: datetime | None,
    ) -> None:
        """Read-back: the cache keeps the PMS's version of what was written, normalized with
        the integration's enum mappings as of `integration_version`."""
        if action in (CREATE, UPDATE) and result.record and record_key(result.record):
            mappings = self._enum_mappings.get(session, integration_id, integration_version, model)
            write_record(connection, integration_id, model, result.record, now, mappings)

    def _judge(
        self,
        error: PmsError,
        attempts: int,
        accepted_at: datetime,
        outcome_unknown: bool,
        now: datetime,
    ) -> _Failure:
        """What a failed attempt does to a job that has made `attempts` attempts of a write
        accepted at `accepted_at`: give up, or wait and try again."""
        # Kept on a failed job too: a retry-write copies it and must read back first.
        unknown = outcome_unknown or error.outcome_unknown
        throttled_s = (now - accepted_at).total_seconds()
        if isinstance(error, PmsThrottled) and throttled_s > self._settings.max_throttled_s:
            message = (
                f"{error.message} (still throttled {throttled_s:.0f} s after the write was "
                f"accepted; gave up after PMSQ_MAX_THROTTLED_S={self._settings.max_throttled_s:g})"
            )
            return _Failure(attempts, unknown, message)
        if isinstance(error, PmsThrottled):
            # The PMS's back-pressure is not the job's fault: no attempt is burned, and the
            # integration's pause (not a job delay) holds it back until Retry-After; but only
            # for PMSQ_MAX_THROTTLED_S, so a PMS that answers 429 forever ends the write.
            return _Failure(attempts - 1, unknown, None, 0.0)
        if error.retryable and attempts < self._settings.max_attempts:
            delay = retry_delay_s(attempts, self._settings.retry_base_s, self._settings.retry_max_s)
            if error.outcome_unknown:
                # A PMS still working on the lost attempt gets as long again as we waited for
                # it, before the next attempt looks for what that attempt did.
                delay = max(delay, self._settings.pms_timeout_s)
            return _Failure(attempts, unknown, None, delay)
        message = error.message
        if error.retryable:
            message = f"{message} (gave up after {attempts} attempts)"
        return _Failure(attempts, unknown, message)

    def _apply_failure(
        self,
        session: Session,
        job: Job,
        error: PmsError,
        now: datetime,
        subscribed: Sequence[Subscription],
    ) -> float:
        """Defer or fail the loaded job (`_judge`); returns the deferral in seconds (0 when it
        failed)."""
        failure = self._judge(error, job.attempts, job.created_at, job.outcome_unknown, now)
        job.attempts = failure.attempts
        job.outcome_unknown = failure.outcome_unknown
        if failure.gave_up is not None:
            self._finish(session, job, JobStatus.FAILURE, now, failure.gave_up, subscribed)
            return 0.0
        requeue(job, now, failure.due_at(now))
        job.error = error.message
        return failure.delay_s

    def _finish(
        self,
        session: Session,
        job: Job,
        status: JobStatus,
        now: datetime,
        error: str,
        subscribed: Sequence[Subscription] | None = None,
    ) -> None:
        finish_job(
            session,
            job,
            status,
            now,
            max_jobs_per_tree=self._settings.max_jobs_per_tree,
            error=error,
            subscribed=subscribed,
        )


@dataclass(frozen=True)
class _Failure:
    """What a failed attempt does to its job (`JobRunner._judge`)."""

    #: The job's attempts from now on (a 429 gives its attempt back).
    attempts: int
    outcome_unknown: bool
    #: The job's final error when it gives up; None when it is tried again.
    gave_up: str | None
    #: Seconds until it is tried again.
    delay_s: float = 0.0

    def due_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.delay_s)


def _write_latency_s(session: Session, job: Job, now: datetime) -> float | None:
    """Seconds from acceptance to final status, when this outcome completed the write."""
    if job.status not in (JobStatus.SUCCESS.value, JobStatus.FAILURE.value):
        return None
    root = session.get(Job, job.root_job_id)  # already loaded (locked) by finish_job
    if root is None or root.tree_finished < root.tree_total:
        return None
    return (now - root.created_at).total_seconds()


def _step_of(job: StartedRun) -> Step:
    return Step(
        model=job.model,
        action=job.action,
        target_id=job.target_id,
        payload=dict(job.payload),
        idempotency_key=job.idempotency_key,
        outcome_unknown=job.outcome_unknown,
        accepted_at=job.created_at,
    )


def _log_rows(claim: Claim, exchanges: list[Exchange], now: datetime) -> list[dict[str, Any]]:
    """The claim's exchanges as `JobLog` rows, for one INSERT."""
    return [
        {
            "id": new_id(),
            "job_id": claim.job_id,
            "attempt": claim.attempt,
            "method": ex.method,
            "url": ex.url,
            "request_headers": ex.request_headers,
            "request_body": ex.request_body,
            "response_status": ex.response_status,
            "response_headers": ex.response_headers,
            "response_body": ex.response_body,
            "duration_ms": ex.duration_ms,
            "error": ex.error,
            "created_at": now,
        }
        for ex in exchanges
    ]

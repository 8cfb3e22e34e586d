"""Retention: the job store forgets what is old and final, one bounded batch at a time.

After `PMSQ_RETENTION_DAYS` these go:
- a write tree (or a sync's job) whose every job is final: its job logs, then the jobs below
  the root, then the root last, so the write's status answers until the tree is gone (then
  write-status is 404);
- a finished sync execution and its data diffs, except the latest finished execution of each
  integration, which sync-status reports as `last_execution`;
- a finished webhook delivery and its attempts.
Idempotency-Key records go once their TTL (`PMSQ_IDEMPOTENCY_TTL_S`) has passed.

Each batch is one short transaction of statements bounded by `batch_rows` (deliveries also
take their attempts, at most `PMSQ_WEBHOOK_MAX_ATTEMPTS` each), reading the oldest candidates
through an index on the time that makes them old, so a purge never holds a lock for long and
costs nothing when nothing is due. Every delete names its rows by primary key, so a purge
racing another (or the API re-taking an expired key) deletes nothing twice and nothing new.

Beat's leader runs the passes (`RetentionSweep`, driven by `pmsq.scheduler.beat`): one batch per
tick while a pass has work, a pass every `PASS_INTERVAL_S`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from pmsq.models.base import utcnow
from pmsq.models.enums import TERMINAL_STATUSES
from pmsq.models.idempotency import IdempotencyRecord
from pmsq.models.job import Job, JobLog
from pmsq.models.sync import UNFINISHED_SYNC, DataDiff, SyncExecution
from pmsq.models.webhook import TERMINAL_DELIVERY, WebhookAttempt, WebhookDelivery

logger = logging.getLogger(__name__)

#: Most rows one purge statement deletes.
BATCH_ROWS = 500
#: Time from the end of one purge pass to the start of the next.
PASS_INTERVAL_S = 600.0
#: Pause between two batches of one pass, so other writers of the job store get their turn
#: (SQLite has one write lock).
BATCH_PAUSE_S = 0.05

_FINAL_JOB = [s.value for s in TERMINAL_STATUSES]
_FINAL_DELIVERY = [s.value for s in TERMINAL_DELIVERY]
_UNFINISHED_SYNC = [s.value for s in UNFINISHED_SYNC]


class Retention:
    """Deletes what is past retention; `purge_batch` is one bounded transaction."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        retention_days: float,
        idempotency_ttl_s: float,
        batch_rows: int = BATCH_ROWS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._retention = timedelta(days=retention_days)
        self._idempotency_ttl = timedelta(seconds=idempotency_ttl_s)
        self._batch_rows = batch_rows
        self._clock = clock

    def purge_batch(self) -> int:
        """Delete one batch of the first kind that has any; the rows deleted (0: none left)."""
        now = self._clock()
        cutoff = now - self._retention
        purges: Sequence[Callable[[Session], int]] = (
            lambda session: self._idempotency_records(session, now - self._idempotency_ttl),
            lambda session: self._webhook_deliveries(session, cutoff),
            lambda session: self._sync_executions(session, cutoff),
            lambda session: self._job_trees(session, cutoff),
        )
        for purge in purges:
            with self._session_factory.begin() as session:
                deleted = purge(session)
            if deleted:
                return deleted
        return 0

    def purge(self) -> int:
        """Batches until nothing is left to purge; the rows deleted."""
        total = 0
        while deleted := self.purge_batch():
            total += deleted
        return total

    def _idempotency_records(self, session: Session, expired_before: datetime) -> int:
        ids = session.scalars(
            select(IdempotencyRecord.id)
            .where(IdempotencyRecord.created_at <= expired_before)
            .order_by(IdempotencyRecord.created_at)
            .limit(self._batch_rows)
        ).all()
        return _delete(session, IdempotencyRecord, ids)

    def _webhook_deliveries(self, session: Session, cutoff: datetime) -> int:
        ids = session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.created_at < cutoff,
                WebhookDelivery.status.in_(_FINAL_DELIVERY),
            )
            .order_by(WebhookDelivery.created_at)
            .limit(self._batch_rows)
        ).all()
        if ids:
            session.execute(
                delete(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(ids))
                .execution_options(synchronize_session=False)
            )
        return _delete(session, WebhookDelivery, ids)

    def _sync_executions(self, session: Session, cutoff: datetime) -> int:
        """Diffs of the batch's executions first (bounded), the executions once they have none."""
        newer = aliased(SyncExecution)
        ids = session.scalars(
            select(SyncExecution.id)
            .where(
                SyncExecution.completed_at < cutoff,
                SyncExecution.status.not_in(_UNFINISHED_SYNC),
                exists().where(
                    newer.integration_id == SyncExecution.integration_id,
                    newer.completed_at > SyncExecution.completed_at,
                ),
            )
            .order_by(SyncExecution.completed_at)
            .limit(self._batch_rows)
        ).all()
        if not ids:
            return 0
        diff_ids = session.scalars(
            select(DataDiff.id).where(DataDiff.execution_id.in_(ids)).limit(self._batch_rows)
        ).all()
        if diff_ids:
            return _delete(session, DataDiff, diff_ids)
        return _delete(session, SyncExecution, ids)

    def _job_trees(self, session: Session, cutoff: datetime) -> int:
        """Job logs of the batch's trees first, then the jobs below the roots, then the roots."""
        roots = session.scalars(
            select(Job.id)
            .where(
                Job.tree_finished_at < cutoff,
                Job.id == Job.root_job_id,
                Job.tree_finished >= Job.tree_total,
                Job.status.in_(_FINAL_JOB),
            )
            .order_by(Job.tree_finished_at)
            .limit(self._batch_rows)
        ).all()
        if not roots:
            return 0
        log_ids = session.scalars(
            select(JobLog.id)
            .join(Job, Job.id == JobLog.job_id)
            .where(Job.root_job_id.in_(roots))
            .limit(self._batch_rows)
        ).all()
        if log_ids:
            return _delete(session, JobLog, log_ids)
        below = session.scalars(
            select(Job.id)
            .where(Job.root_job_id.in_(roots), Job.id != Job.root_job_id)
            .limit(self._batch_rows)
        ).all()
        if below:
            return _delete(session, Job, below)
        return _delete(session, Job, roots)


def _delete(
    session: Session,
    model: type[IdempotencyRecord | WebhookDelivery | DataDiff | SyncExecution | JobLog | Job],
    ids: Sequence[str],
) -> int:
    if not ids:
        return 0
    session.execute(
        delete(model).where(model.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return len(ids)


class RetentionSweep:
    """Paces purge passes for a periodic caller (beat's tick): `tick` runs at most one batch.

    A failed batch (the database briefly away) is logged and ends the pass; the next starts
    after the interval, so the caller's own work is never held up by the purge.
    """

    def __init__(
        self,
        retention: Retention,
        interval_s: float = PASS_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retention = retention
        self._interval_s = interval_s
        self._monotonic = monotonic
        #: When the next batch may run (the first pass starts at once).
        self._next_at = monotonic()
        self._pass_deleted = 0

    def tick(self) -> float:
        """One batch if one is due; returns the seconds until the next batch is due."""
        if self._monotonic() < self._next_at:
            return self._next_at - self._monotonic()
        try:
            deleted = self._retention.purge_batch()
        except Exception:
            logger.exception("retention purge failed; the next pass retries it")
            deleted = 0
        if deleted:
            self._pass_deleted += deleted
            self._next_at = self._monotonic() + BATCH_PAUSE_S
        else:
            if self._pass_deleted:
                logger.info("retention purge deleted %d rows", self._pass_deleted)
            self._pass_deleted = 0
            self._next_at = self._monotonic() + self._interval_s
        return self._next_at - self._monotonic()

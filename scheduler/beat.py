"""The beat scheduler: `celery -A pmsq.workers.app beat` runs it (set as `beat_scheduler`).

Schedules live in the database (one indexed row per integration), not in beat's memory, so
changes made through the API are followed on the next tick and tens of thousands of
integrations cost one range scan per tick. Only the holder of the leader lease fires, and
only it purges what is past retention (`pmsq.scheduler.retention`), one short batch per tick.
"""

from __future__ import annotations

import logging
import socket
import uuid
from typing import Any

from celery.beat import Scheduler

from pmsq.metrics import MetricsRecorder
from pmsq.models.base import utcnow
from pmsq.models.db import make_engine, make_session_factory
from pmsq.redis_client import flow_redis
from pmsq.scheduler.firing import SyncFirer
from pmsq.scheduler.leader import LeaderLease
from pmsq.scheduler.retention import Retention, RetentionSweep
from pmsq.settings import get_settings
from pmsq.workers.flow.redis_backend import RedisFlowControl

logger = logging.getLogger(__name__)


class DatabaseScheduler(Scheduler):
    #: Longest sleep between ticks: schedule changes are seen within this.
    max_tick_s = 1.0

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        self._engine = make_engine(settings.database_url)
        self._redis = flow_redis(settings)
        session_factory = make_session_factory(self._engine)
        self._firer = SyncFirer(session_factory, RedisFlowControl(self._redis))
        self._metrics = MetricsRecorder(self._redis, flush_interval_s=settings.metrics_flush_s)
        retention = Retention(
            session_factory,
            retention_days=settings.retention_days,
            idempotency_ttl_s=settings.idempotency_ttl_s,
        )
        self._retention = RetentionSweep(retention)
        holder = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._leader = LeaderLease(self._redis, holder, settings.beat_leader_ttl_s)
        self._retry_s = settings.beat_leader_ttl_s / 3
        self._leading = False
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        """No static entries: every schedule is a database row."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        leading = self._leader.hold()
        if leading != self._leading:
            logger.warning("beat %s leadership", "took" if leading else "lost")
            self._leading = leading
        if not leading:
            return self._retry_s
        result = self._firer.fire_due()
        # Counted so an alert can tell a beat that stopped firing from one with nothing due.
        self._metrics.count("pmsq_beat_ticks")
        self._metrics.count("pmsq_syncs_fired", result.fired)
        if result.fired or result.skipped:
            logger.info("fired %d syncs (%d skipped)", result.fired, result.skipped)
        purge_wait_s = self._retention.tick()
        if result.more_due:
            return 0.0
        if result.next_due_at is None:
            return max(0.01, min(self.max_tick_s, purge_wait_s))
        wait_s = (result.next_due_at - utcnow()).total_seconds()
        return max(0.01, min(self.max_tick_s, self._retry_s, wait_s, purge_wait_s))

    def close(self) -> None:
        if self._leading:
            self._leader.release()
        self._redis.close()
        self._engine.dispose()
        super().close()

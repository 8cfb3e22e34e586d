"""The beat scheduler: `celery -A pmsq.workers.app beat` runs it (set as `beat_scheduler`).

Schedules live in the database (one indexed row per integration). Beat keeps only the earliest
next run in memory, and an idle tick is one Redis round trip: the leader lease renewed, the
schedules' change signal read (`pmsq.scheduler.changes`) and the last tick counted, together;
no database query. The job store is read (one index lookup, or the firing of what is due) only
when the earliest run is due, when this beat takes the leadership, when the signal says an API
change was committed, and every `RECHECK_S` in any case. So a change made through the API is
followed on the next tick (at most `max_tick_s` after its commit), or within `RECHECK_S` if its
signal was lost, and tens of thousands of integrations cost nothing while none is due. Only the
holder of the leader lease fires, and only it purges what is past retention
(`pmsq.scheduler.retention`), one short batch per tick.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime
from time import monotonic
from typing import Any

import redis
from celery.beat import Scheduler

from pmsq.metrics import COUNTERS_KEY, counter_field
from pmsq.models.base import utcnow
from pmsq.models.db import make_engine, make_session_factory
from pmsq.redis_client import flow_redis
from pmsq.scheduler.changes import RECHECK_S, SCHEDULES_CHANGED_KEY
from pmsq.scheduler.firing import SyncFirer, TickResult
from pmsq.scheduler.leader import LeaderLease
from pmsq.scheduler.retention import Retention, RetentionSweep
from pmsq.settings import get_settings
from pmsq.workers.flow.redis_backend import RedisFlowControl

logger = logging.getLogger(__name__)


class DatabaseScheduler(Scheduler):
    #: Longest sleep between ticks: signalled schedule changes are seen within this.
    max_tick_s = 1.0

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        self._engine = make_engine(settings.database_url)
        self._redis = flow_redis(settings)
        session_factory = make_session_factory(self._engine)
        self._firer = SyncFirer(session_factory, RedisFlowControl(self._redis))
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
        #: The earliest next run as last read from the job store (None: nothing scheduled).
        self._next_due_at: datetime | None = None
        #: The change signal's token when that was read; `_UNREAD` forces a read.
        self._signal: object = _UNREAD
        #: Monotonic time after which the job store is read even without a signal.
        self._recheck_at = 0.0
        #: Counter increments not yet written: they ride in the next tick's round trip.
        self._unsent: dict[str, int] = {}
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        """No static entries: every schedule is a database row."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        leading, signal = self._round_trip()
        if leading != self._leading:
            logger.warning("beat %s leadership", "took" if leading else "lost")
            self._leading = leading
            self._signal = _UNREAD  # another beat may have fired meanwhile
        if not leading:
            return self._retry_s
        # Counted so an alert can tell a beat that stopped firing from one with nothing due.
        self._count("pmsq_beat_ticks")
        result = self._fire_if_due(signal)
        purge_wait_s = self._retention.tick()
        if result is not None and result.more_due:
            return 0.0
        if self._next_due_at is None:
            return max(0.01, min(self.max_tick_s, purge_wait_s))
        wait_s = (self._next_due_at - utcnow()).total_seconds()
        return max(0.01, min(self.max_tick_s, self._retry_s, wait_s, purge_wait_s))

    def _fire_if_due(self, signal: object) -> TickResult | None:
        """Fire what is due, unless the earliest run known is not due and nothing says it may
        have moved (None: the job store was not read)."""
        unchanged = signal == self._signal and monotonic() < self._recheck_at
        if unchanged and (self._next_due_at is None or self._next_due_at > utcnow()):
            return None
        recheck_at = monotonic() + RECHECK_S
        result = self._firer.fire_due()
        # `signal` was read before the job store: a change committed after this read signals
        # again. With more due than one batch, the rest goes at once (no signal needed).
        self._signal = _UNREAD if result.more_due else signal
        self._recheck_at = recheck_at
        self._next_due_at = result.next_due_at
        self._count("pmsq_syncs_fired", result.fired)
        if result.fired or result.skipped:
            logger.info("fired %d syncs (%d skipped)", result.fired, result.skipped)
        return result

    def _round_trip(self) -> tuple[bool, object]:
        """One pipelined round trip: the counts of earlier ticks written, the leader lease taken
        or renewed, and the schedules' change signal read."""
        unsent, self._unsent = self._unsent, {}
        pipe = self._redis.pipeline(transaction=False)
        for field, amount in unsent.items():
            pipe.hincrby(COUNTERS_KEY, field, amount)
        self._leader.queue_hold(pipe)
        pipe.get(SCHEDULES_CHANGED_KEY)
        try:
            answers = pipe.execute(raise_on_error=False)
        except Exception:
            self._restore(unsent.items())
            raise
        counted = zip(unsent.items(), answers[: len(unsent)], strict=True)
        self._restore(item for item, answer in counted if isinstance(answer, Exception))
        signal = answers[-1]
        if isinstance(signal, Exception):
            raise signal
        return self._leader.held(answers[-2]), signal

    def _count(self, name: str, amount: int = 1) -> None:
        if amount:
            field = counter_field(name, {})
            self._unsent[field] = self._unsent.get(field, 0) + amount

    def _restore(self, unsent: Iterable[tuple[str, int]]) -> None:
        """Keep increments Redis did not take for the next round trip."""
        for field, amount in unsent:
            self._unsent[field] = self._unsent.get(field, 0) + amount

    def close(self) -> None:
        if self._leading:
            self._leader.release()
        try:
            for field, amount in self._unsent.items():
                self._redis.hincrby(COUNTERS_KEY, field, amount)
        except redis.RedisError:
            logger.warning("the last tick's counts were not recorded: Redis is unavailable")
        self._redis.close()
        self._engine.dispose()
        super().close()


#: A change-signal value no read returns, so the next tick reads the job store.
_UNREAD = object()

"""The signal that tells beat a sync schedule changed, so an idle beat need not ask the database.

Beat keeps the earliest next run in memory and re-reads it from the job store only when it is
due, when it takes the leadership, when this signal changed, and every `RECHECK_S` in any case.
Whoever commits a schedule change writes a fresh random token to `SCHEDULES_CHANGED_KEY`
*after* the commit; beat reads the token in the same Redis round trip as its leader lease,
*before* it reads the database. So a change committed after beat's read rewrites the token after
beat read it, and beat's next tick (at most `DatabaseScheduler.max_tick_s` later) re-reads. A
token rather than a counter: a Redis that lost its data (or a failover) cannot hand back a value
beat already saw. A signal that never arrives (Redis unreachable right after the commit, or the
writer died between commit and signal) delays the change by at most `RECHECK_S`.

`refresh_schedule` marks its session; `signal_schedule_changes` makes the sessions of an engine
write the token after each commit of a marked session (the API turns it on at start).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import redis
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

#: Redis key (STRING): a random token rewritten after every committed change of a sync schedule
#: (its cadence, its integration's activity). Beat compares it with the one it last read. No
#: expiry; losing it only makes beat re-read the job store once.
SCHEDULES_CHANGED_KEY = "pmsq:beat:schedules"
#: Longest time beat trusts its in-memory earliest next run without a signal: the bound on how
#: late a change whose signal was lost is followed.
RECHECK_S = 10.0
#: `Session.info` flag: this session's transaction changed a schedule.
_CHANGED = "pmsq.scheduler.schedules_changed"


def mark_changed(session: Session) -> None:
    """Record that the session's transaction changed a schedule (signalled after its commit)."""
    session.info[_CHANGED] = True


def signal(client: redis.Redis) -> None:
    """Tell beat that a committed change moved a schedule: call after the commit."""
    client.set(SCHEDULES_CHANGED_KEY, uuid.uuid4().hex)


def signal_schedule_changes(engine: Engine, client: redis.Redis) -> Callable[[], None]:
    """From now on, every session bound to `engine` whose committed transaction changed a
    schedule writes a fresh token to `SCHEDULES_CHANGED_KEY` right after its commit. Returns
    the function that stops it.

    A failed write is logged, never raised: the change is committed, and beat follows it within
    `RECHECK_S` anyway."""

    def after_commit(session: Session) -> None:
        if getattr(session.bind, "pool", None) is not engine.pool:
            return  # another engine's session: its own listener, if any, signals
        if not session.info.pop(_CHANGED, False):
            return
        try:
            signal(client)
        except redis.RedisError:
            logger.warning(
                "could not signal a schedule change to beat; it follows within %.0f s", RECHECK_S
            )

    def after_rollback(session: Session) -> None:
        if getattr(session.bind, "pool", None) is engine.pool:
            session.info.pop(_CHANGED, None)

    # On the Session class: a store's session factory may make its writing sessions with a
    # sessionmaker of its own (`pmsq.models.db.StoreSessions`).
    event.listen(Session, "after_commit", after_commit)
    event.listen(Session, "after_rollback", after_rollback)

    def stop() -> None:
        event.remove(Session, "after_commit", after_commit)
        event.remove(Session, "after_rollback", after_rollback)

    return stop

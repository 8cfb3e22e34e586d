"""Data access: which models an integration can read, as its syncs found, and which the
vendor's profile says pmsq creates and updates.

A data access check is a full read sync (a manual sync of every model): reading each model is
what proves read access, and it refreshes the cache on the way. A model's read access is the
outcome of the newest sync that covered it: SUCCESS, FAILED with the PMS's refusal, PROCESSING
while a sync is still to read it, untested before any sync did. Create and update stay
`untested` (pmsq writes nothing to find out) or `unsupported` by the vendor's profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.services.integrations import owned_integration
from pmsq.api.services.syncs import SyncService
from pmsq.errors import Conflict
from pmsq.models.enums import vendor_from_wire
from pmsq.models.schemas import (
    AccessCheck,
    AccessStatus,
    AccessUnsupported,
    AccessUntested,
    DataAccessOut,
    ModelAccess,
)
from pmsq.models.sync import UNFINISHED_SYNC, SyncExecution, SyncStatus, SyncType
from pmsq.pms.profiles import CREATE, UPDATE
from pmsq.pms.registry import profile_for
from pmsq.workers.sync_runner import Cursor

#: Ended executions looked at for models' read outcomes (newest first).
RECENT_SYNCS = 50
_ENDED = (SyncStatus.SUCCESS.value, SyncStatus.FAILURE.value)


def read_outcome(execution: SyncExecution, index: int, model: str) -> AccessCheck:
    """What `execution` (ended or running) found about reading `model`, its `index`-th."""
    prefix = f"{model}: "
    refused = [e[len(prefix) :] for e in execution.errors if str(e).startswith(prefix)]
    if refused:
        return AccessStatus(status="FAILED", error_message=refused[-1])
    if index < Cursor.of(execution.cursor).model:
        return AccessStatus(status="SUCCESS", error_message=None)
    if execution.status in (SyncStatus.PENDING.value, SyncStatus.RUNNING.value):
        return AccessStatus(status="PROCESSING", error_message=None)
    if execution.status == SyncStatus.SUCCESS.value:
        return AccessStatus(status="SUCCESS", error_message=None)
    # Ended before reading it (the sync's job gave up): its last error says why.
    reason = str(execution.errors[-1]) if execution.errors else "the sync ended before it"
    return AccessStatus(status="FAILED", error_message=reason)


def data_access(session: Session, integration_id: str, vendor: str) -> DataAccessOut:
    """The integration's data access report, from its newest syncs (a few queries)."""
    profile = profile_for(str(vendor_from_wire(vendor)))
    unfinished = session.scalars(
        select(SyncExecution)
        .where(
            SyncExecution.integration_id == integration_id,
            SyncExecution.status.in_([s.value for s in UNFINISHED_SYNC]),
        )
        .order_by(SyncExecution.created_at.desc())
    ).all()
    ended = session.scalars(
        select(SyncExecution)
        .where(
            SyncExecution.integration_id == integration_id,
            SyncExecution.status.in_(_ENDED),
        )
        .order_by(SyncExecution.completed_at.desc())
        .limit(RECENT_SYNCS)
    ).all()
    reads = _reads(sorted(profile.models), [*unfinished, *ended])
    untested, unsupported = AccessUntested(), AccessUnsupported()
    last: datetime | None = ended[0].completed_at if ended else None
    return DataAccessOut(
        models={
            name: ModelAccess(
                read=reads.get(name, untested),
                create=untested if CREATE in support.actions else unsupported,
                update=untested if UPDATE in support.actions else unsupported,
            )
            for name, support in sorted(profile.models.items())
        },
        last_data_access_check=last,
        data_access_check_in_process=bool(unfinished),
    )


def _reads(known: Sequence[str], executions: Sequence[SyncExecution]) -> dict[str, AccessCheck]:
    """Each model's read outcome from the first of `executions` that covers it (an
    execution with no models listed covers them all)."""
    reads: dict[str, AccessCheck] = {}
    for execution in executions:
        covered = [str(m) for m in execution.models] or known
        for index, model in enumerate(covered):
            if model in known and model not in reads:
                reads[model] = read_outcome(execution, index, model)
    return reads


class DataAccessService:
    def __init__(self, session_factory: sessionmaker[Session], syncs: SyncService) -> None:
        self._session_factory = session_factory
        self._syncs = syncs

    def report(self, account_id: str, integration_id: str) -> DataAccessOut:
        with self._session_factory() as session:
            integration = owned_integration(session, account_id, integration_id)
            return data_access(session, integration_id, integration.integration_vendor)

    def start(self, account_id: str, integration_id: str) -> bool:
        """Start a check: a manual sync of every model. False, as Propexo answers, while a
        sync is already running (one check at a time) or when the integration refuses
        manual syncs or is held by a backsync."""
        with self._session_factory() as session:
            owned_integration(session, account_id, integration_id)
            running = session.scalar(
                select(SyncExecution.id)
                .where(
                    SyncExecution.integration_id == integration_id,
                    SyncExecution.status.in_([s.value for s in UNFINISHED_SYNC]),
                )
                .limit(1)
            )
        if running is not None:
            return False
        try:
            self._syncs.trigger(account_id, integration_id, SyncType.MANUAL, None)
        except Conflict:
            return False
        return True

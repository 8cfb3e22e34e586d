"""The outbox writer: webhook events as rows, in the transaction of the change that causes them.

Payloads follow Propexo's webhook shape (`{trigger, data: {event, job_id, root_job_id,
integration_id, job_type, vendor, ...}, meta}`, its public OpenAPI `webhooks` section), with
pmsq's additions: a top-level `timestamp`, the write's `write_status`, `errors` and
`created_record_id` (as write-status answers them) on write events, and the execution's id,
status and counts on SYNC_COMPLETE. Only the account's active endpoints subscribed to an event
get a row.

Sync events follow Propexo's rules: an integration's first sync to end sends
FIRST_SYNC_COMPLETE and every later one SYNC_COMPLETE; DATA_NEW and DATA_UPDATE (one per record
a sync found new or changed) are not sent by the first sync nor by backsyncs, whose every
record would be news.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmsq.models.base import iso_z
from pmsq.models.enums import JobStatus, vendor_on_wire
from pmsq.models.integration import Integration
from pmsq.models.job import SYNC_ACTION, Job
from pmsq.models.sync import SyncExecution, SyncStatus, SyncType
from pmsq.models.webhook import DeliveryStatus, WebhookDelivery, WebhookEvent
from pmsq.workers.outcome import write_outcome
from pmsq.workers.webhooks.subscriptions import Subscription, subscriptions


def envelope(
    event: WebhookEvent, data: dict[str, Any], now: datetime, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "trigger": event.value,
        "timestamp": iso_z(now),
        "data": {"event": event.value, **data},
    }
    if meta is not None:
        body["meta"] = meta
    return body


def emit(
    session: Session,
    account_id: str,
    event: WebhookEvent,
    build: Callable[[], dict[str, Any]],
    now: datetime,
    model: str | None = None,
    subscribed: Sequence[Subscription] | None = None,
) -> list[WebhookDelivery]:
    """Add one PENDING delivery, due now, per subscribed endpoint (one that names a model only
    for events about that model, or about none); `build()` makes the payload only if some
    endpoint listens, so events nobody subscribed to cost one indexed query, or none when the
    caller passes the account's `subscribed` endpoints, as read in its transaction."""
    endpoint_ids = _listening(session, account_id, event, model, subscribed)
    if not endpoint_ids:
        return []
    return _deliveries(session, endpoint_ids, event, build(), now)


def _listening(
    session: Session,
    account_id: str,
    event: WebhookEvent,
    model: str | None,
    subscribed: Sequence[Subscription] | None = None,
) -> list[str]:
    """Ids of the endpoints subscribed to `event` about `model` (`subscribed`, or the account's
    endpoints read now)."""
    if subscribed is None:
        subscribed = subscriptions(session, account_id)
    return [s.endpoint_id for s in subscribed if s.wants(event.value, model)]


def _deliveries(
    session: Session,
    endpoint_ids: Sequence[str],
    event: WebhookEvent,
    payload: dict[str, Any],
    now: datetime,
) -> list[WebhookDelivery]:
    rows = [
        WebhookDelivery(
            endpoint_id=endpoint_id,
            event=event.value,
            payload=payload,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint_id in endpoint_ids
    ]
    session.add_all(rows)
    return rows


def _vendor(session: Session, integration_id: str) -> str | None:
    integration = session.get(Integration, integration_id)
    return vendor_on_wire(integration.integration_vendor) if integration is not None else None


def _job_data(session: Session, job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "root_job_id": job.root_job_id,
        "integration_id": job.integration_id,
        "job_type": job.action,
        "vendor": _vendor(session, job.integration_id),
        "object": job.model,
    }


def on_job_finished(
    session: Session,
    job: Job,
    root: Job,
    now: datetime,
    subscribed: Sequence[Subscription] | None = None,
) -> None:
    """Called by the aggregator once `job`'s outcome and `root`'s counters are updated.

    JOB_FAILURE for any job that failed for good, JOB_SUCCESS for one that succeeded;
    WRITE_OPERATION_SUCCESS / _FAILURE when the write's tree just became complete (never for
    sync jobs). `subscribed`: the account's endpoints as of this transaction, if the caller
    has them (else they are read, once per event).
    """
    if job.status == JobStatus.SUCCESS.value:

        def job_success() -> dict[str, Any]:
            data = {**_job_data(session, job), "attempts": job.attempts}
            return envelope(
                WebhookEvent.JOB_SUCCESS,
                data,
                now,
                {"object": job.model, "integration_id": job.integration_id},
            )

        emit(
            session,
            job.account_id,
            WebhookEvent.JOB_SUCCESS,
            job_success,
            now,
            job.model,
            subscribed,
        )
    if job.status == JobStatus.FAILURE.value:

        def job_failure() -> dict[str, Any]:
            data = {**_job_data(session, job), "error": job.error, "attempts": job.attempts}
            return envelope(
                WebhookEvent.JOB_FAILURE,
                data,
                now,
                {"object": job.model, "integration_id": job.integration_id},
            )

        emit(
            session,
            job.account_id,
            WebhookEvent.JOB_FAILURE,
            job_failure,
            now,
            job.model,
            subscribed,
        )
    if root.action == SYNC_ACTION or root.tree_finished != root.tree_total:
        return
    failed = root.tree_failed > 0
    event = WebhookEvent.WRITE_OPERATION_FAILURE if failed else WebhookEvent.WRITE_OPERATION_SUCCESS

    def write_event() -> dict[str, Any]:
        outcome = write_outcome(session, root)
        data = {
            **_job_data(session, root),
            "write_status": outcome.write_status.value,
            "errors": outcome.errors,
            "created_record_id": outcome.created_record_id,
        }
        return envelope(
            event, data, now, {"object": root.model, "integration_id": root.integration_id}
        )

    emit(session, root.account_id, event, write_event, now, root.model, subscribed)


#: Statuses of a sync execution that ran to its end.
_ENDED = (SyncStatus.SUCCESS.value, SyncStatus.FAILURE.value)


def _another_sync_ended(session: Session, execution: SyncExecution) -> bool:
    """Whether a sync of `execution`'s integration other than it has already ended."""
    other = session.scalar(
        select(SyncExecution.id)
        .where(
            SyncExecution.integration_id == execution.integration_id,
            SyncExecution.id != execution.id,
            SyncExecution.status.in_(_ENDED),
        )
        .limit(1)
    )
    return other is not None


@dataclass(frozen=True)
class RecordChange:
    """One record a sync page found new or changed, as the cache now holds it."""

    #: pmsq's id of the cached record (what `GET /v1/{model}/{id}` takes).
    record_id: str
    #: The record's id at the PMS.
    pms_id: str
    data: dict[str, Any]
    #: For an update: `{field: {"old", "new"}}`; empty for a new record.
    changes: dict[str, Any]


def on_records_changed(
    session: Session,
    execution: SyncExecution,
    model: str,
    new: Sequence[RecordChange],
    updated: Sequence[RecordChange],
    now: datetime,
) -> None:
    """DATA_NEW per new record and DATA_UPDATE per changed one of a sync page, to endpoints
    listening for `model` (or every model); none from a backsync or the integration's first
    sync. Costs one query per event when nobody listens, whatever the page's size."""
    if execution.type == SyncType.BACKSYNC.value or not (new or updated):
        return
    integration = session.get(Integration, execution.integration_id)
    if integration is None:
        return
    listening = {
        event: _listening(session, integration.account_id, event, model) if changes else []
        for event, changes in ((WebhookEvent.DATA_NEW, new), (WebhookEvent.DATA_UPDATE, updated))
    }
    if not any(listening.values()) or not _another_sync_ended(session, execution):
        return
    base = {
        "integration_id": integration.id,
        "job_id": execution.job_id,
        "root_job_id": execution.job_id,
        "job_type": SYNC_ACTION,
        "vendor": vendor_on_wire(integration.integration_vendor),
        "object": model,
        "execution_id": execution.id,
    }
    meta = {"object": model, "integration_id": integration.id}
    for change in new:
        data = {**base, **_record_fields(change), "payload": change.data}
        payload = envelope(WebhookEvent.DATA_NEW, data, now, meta)
        _deliveries(session, listening[WebhookEvent.DATA_NEW], WebhookEvent.DATA_NEW, payload, now)
    for change in updated:
        diff = {
            "previous": {name: c["old"] for name, c in change.changes.items()},
            "new": {name: c["new"] for name, c in change.changes.items()},
        }
        data = {**base, **_record_fields(change), "diff": diff}
        payload = envelope(WebhookEvent.DATA_UPDATE, data, now, meta)
        _deliveries(
            session, listening[WebhookEvent.DATA_UPDATE], WebhookEvent.DATA_UPDATE, payload, now
        )


def _record_fields(change: RecordChange) -> dict[str, Any]:
    property_id = change.data.get("property_id")
    return {
        "record_id": change.record_id,
        "x_id": change.pms_id,
        "context": {"property_id": None if property_id is None else str(property_id)},
    }


def on_sync_finished(session: Session, execution: SyncExecution, now: datetime) -> None:
    """SYNC_COMPLETE (FIRST_SYNC_COMPLETE for the integration's first sync to end), once
    `execution` holds its final status and counts."""
    integration = session.get(Integration, execution.integration_id)
    if integration is None:
        return
    event = (
        WebhookEvent.SYNC_COMPLETE
        if _another_sync_ended(session, execution)
        else WebhookEvent.FIRST_SYNC_COMPLETE
    )

    def sync_complete() -> dict[str, Any]:
        models = len(execution.models)
        data = {
            "integration_id": execution.integration_id,
            "vendor": vendor_on_wire(integration.integration_vendor),
            # Propexo counts the jobs of a sync; a pmsq sync reads one model per step.
            "successful_job_count": max(0, models - execution.error_count),
            "failed_job_count": execution.error_count,
            "is_sync_finished": execution.status
            in (SyncStatus.SUCCESS.value, SyncStatus.FAILURE.value),
            "job_schedule_id": execution.schedule_id,
            "execution_id": execution.id,
            "job_id": execution.job_id,
            "sync_type": execution.type,
            "status": execution.status,
            "counts": execution.counts(),
            "errors": list(execution.errors),
            "started_at": iso_z(execution.started_at),
            "completed_at": iso_z(execution.completed_at),
        }
        return envelope(event, data, now)

    emit(session, integration.account_id, event, sync_complete, now)

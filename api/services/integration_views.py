"""An integration as the API answers it: Propexo's integration object, with pmsq's additions.

Propexo's fields that pmsq does not store are derived: the last completed syncs and whether one
runs come from the integration's sync executions, `models` from its vendor's profile.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from pmsq.models.enums import vendor_on_wire
from pmsq.models.integration import Integration
from pmsq.models.schemas import (
    CustomSyncSchedule,
    IntegrationInterface,
    IntegrationModel,
    IntegrationOut,
)
from pmsq.models.sync import UNFINISHED_SYNC, SyncExecution, SyncStatus, SyncType
from pmsq.pms.profiles import VendorProfile


@dataclass(frozen=True)
class SyncSummary:
    """What an integration's sync executions say about it."""

    #: When its last successful sync of any kind completed.
    last_completed_sync: datetime | None = None
    #: When its last successful backsync completed.
    last_completed_back_sync: datetime | None = None
    #: Some execution is still pending or running.
    is_running_sync: bool = False
    #: When its last sync that ran to its end (success or failure) ended: its last data
    #: access check, since a sync is what checks read access.
    last_ended_sync: datetime | None = None


def sync_summaries(session: Session, integration_ids: Collection[str]) -> dict[str, SyncSummary]:
    """The sync summary of each of `integration_ids`, in one query whatever their number (a
    list page renders with a fixed number of statements); one without executions is absent."""
    if not integration_ids:
        return {}
    succeeded = SyncExecution.status == SyncStatus.SUCCESS.value
    backsync = SyncExecution.type == SyncType.BACKSYNC.value
    unfinished = SyncExecution.status.in_([s.value for s in UNFINISHED_SYNC])
    ended = SyncExecution.status.in_([SyncStatus.SUCCESS.value, SyncStatus.FAILURE.value])
    rows = session.execute(
        select(
            SyncExecution.integration_id,
            func.max(case((succeeded, SyncExecution.completed_at))),
            func.max(case((succeeded & backsync, SyncExecution.completed_at))),
            func.max(case((unfinished, 1), else_=0)),
            func.max(case((ended, SyncExecution.completed_at))),
        )
        .where(SyncExecution.integration_id.in_(list(integration_ids)))
        .group_by(SyncExecution.integration_id)
    ).all()
    return {
        integration_id: SyncSummary(last, last_back, bool(running), last_ended)
        for integration_id, last, last_back, running, last_ended in rows
    }


def integration_view(
    session: Session,
    integration: Integration,
    profile: VendorProfile,
    summary: SyncSummary | None = None,
) -> IntegrationOut:
    """`integration` as the API shows it (`profile`: its vendor's). `summary` is its sync
    summary when the caller read it with others' (a list page); without it, it is read
    through `session`."""
    if summary is None:
        summary = sync_summaries(session, [integration.id]).get(integration.id, SyncSummary())
    vendor = vendor_on_wire(integration.integration_vendor)
    base_interface = f"{vendor}_BASE"
    model_names = sorted(profile.models)
    frequency = integration.max_request_frequency
    return IntegrationOut(
        id=integration.id,
        created_at=integration.created_at,
        updated_at=integration.updated_at,
        name=integration.name,
        vendor=vendor,
        integration_vendor=vendor,
        customer_id=integration.account_id,
        active=integration.active,
        system=integration.system,  # type: ignore[arg-type]
        base_url=integration.base_url,
        is_archived=integration.is_archived,
        new_properties_are_enabled=integration.new_properties_are_enabled,
        sync_frequency=integration.sync_frequency,
        sync_cadence=integration.sync_cadence,  # type: ignore[arg-type]
        max_request_frequency=int(frequency) if float(frequency).is_integer() else frequency,
        max_request_cadence=integration.max_request_cadence,  # type: ignore[arg-type]
        max_job_concurrency=integration.max_job_concurrency,
        custom_sync_schedule=(
            CustomSyncSchedule.model_validate(integration.custom_sync_schedule)
            if integration.custom_sync_schedule
            else None
        ),
        use_custom_sync_schedule=integration.use_custom_sync_schedule,
        allow_manual_syncs=integration.allow_manual_syncs,
        based_on_integration_id=integration.based_on_integration_id,
        last_completed_sync=summary.last_completed_sync,
        last_completed_back_sync=summary.last_completed_back_sync,
        is_running_sync=summary.is_running_sync,
        is_running_data_access_check=summary.is_running_sync,
        last_data_access_check=summary.last_ended_sync,
        can_authenticate=integration.credentials_encrypted is not None,
        has_credentials=integration.credentials_encrypted is not None,
        integration_interfaces=[
            IntegrationInterface(interface_name=base_interface, enabled=True, version=None)
        ],
        models={
            name: IntegrationModel(enabled=True, from_interfaces=[base_interface])
            for name in model_names
        },
        configuration_meta_data=[],
        ping_results={},
    )

"""An integration as the API answers it: Propexo's integration object, with pmsq's additions.

Propexo's fields that pmsq does not store are derived: the last completed syncs and whether one
runs come from the integration's sync executions, `models` from its vendor's profile.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
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


def integration_view(
    session: Session, integration: Integration, profile: VendorProfile
) -> IntegrationOut:
    """`integration` as the API shows it (`profile`: its vendor's); reads its sync executions
    through `session`."""
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
        last_completed_sync=_last_completed(session, integration.id, None),
        last_completed_back_sync=_last_completed(session, integration.id, SyncType.BACKSYNC),
        is_running_sync=_is_running_sync(session, integration.id),
        is_running_data_access_check=False,
        last_data_access_check=None,
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


def _last_completed(
    session: Session, integration_id: str, sync_type: SyncType | None
) -> datetime | None:
    """When the integration's last successful sync (of `sync_type`, or any) completed."""
    stmt = select(func.max(SyncExecution.completed_at)).where(
        SyncExecution.integration_id == integration_id,
        SyncExecution.status == SyncStatus.SUCCESS.value,
    )
    if sync_type is not None:
        stmt = stmt.where(SyncExecution.type == sync_type.value)
    return session.scalar(stmt)


def _is_running_sync(session: Session, integration_id: str) -> bool:
    running = session.scalar(
        select(SyncExecution.id)
        .where(
            SyncExecution.integration_id == integration_id,
            SyncExecution.status.in_([s.value for s in UNFINISHED_SYNC]),
        )
        .limit(1)
    )
    return running is not None

"""Rows the job-store tests start from."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pmsq.models.account import Account
from pmsq.models.base import new_id
from pmsq.models.enums import Cadence, JobStatus, Vendor
from pmsq.models.integration import Integration
from pmsq.models.job import Job


def add_unthrottled_integration(
    session_factory: sessionmaker[Session], **fields: Any
) -> tuple[str, str]:
    """A new account and one SANDBOX integration of it whose limits never hold a test back
    (100,000 requests a second, 100 jobs at once); `fields` set or override the integration's
    columns. Returns (account id, integration id)."""
    with session_factory.begin() as session:
        account = Account(name=f"acme-{uuid.uuid4().hex[:8]}")
        session.add(account)
        session.flush()
        columns: dict[str, Any] = {
            "name": "acme pms",
            "integration_vendor": Vendor.SANDBOX.value,
            "max_request_frequency": 100_000,
            "max_request_cadence": Cadence.SECOND.value,
            "max_job_concurrency": 100,
            **fields,
        }
        integration = Integration(account_id=account.id, **columns)
        session.add(integration)
        session.flush()
        return account.id, integration.id


def add_root_job(
    session_factory: sessionmaker[Session],
    account_id: str,
    integration_id: str,
    at: datetime,
    *,
    status: JobStatus = JobStatus.PENDING,
    payload: dict[str, Any] | None = None,
    model: str = "residents",
    action: str = "CREATE",
    **columns: Any,
) -> str:
    """A write's root job (its own root) as it stands in the store, nothing in Redis: created,
    updated and due at `at`, `payload` by default a resident's first name; `columns` set or
    override any other column. Returns its id."""
    job_id = new_id()
    with session_factory.begin() as session:
        session.add(
            Job(
                id=job_id,
                root_job_id=job_id,
                account_id=account_id,
                integration_id=integration_id,
                model=model,
                action=action,
                payload={"first_name": "Ada"} if payload is None else payload,
                status=status.value,
                **{"due_at": at, "created_at": at, "updated_at": at, **columns},
            )
        )
    return job_id

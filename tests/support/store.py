"""Rows the job-store tests start from."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pmsq.models.account import Account
from pmsq.models.enums import Cadence, Vendor
from pmsq.models.integration import Integration


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

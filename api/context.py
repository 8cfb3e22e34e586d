"""What the API's handlers are given: services built once in `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.auth import AccountTokens
from pmsq.api.services.data_access import DataAccessService
from pmsq.api.services.integrations import IntegrationService
from pmsq.api.services.job_logs import JobLogService
from pmsq.api.services.normalization import NormalizationService
from pmsq.api.services.properties import PropertyService
from pmsq.api.services.records import RecordService
from pmsq.api.services.retry import RetryService
from pmsq.api.services.syncs import SyncService
from pmsq.api.services.webhooks import WebhookService
from pmsq.api.services.writes import WriteService
from pmsq.settings import Settings


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    session_factory: sessionmaker[Session]
    accounts: AccountTokens
    writes: WriteService
    integrations: IntegrationService
    retries: RetryService
    job_logs: JobLogService
    syncs: SyncService
    records: RecordService
    webhooks: WebhookService
    properties: PropertyService
    normalization: NormalizationService
    data_access: DataAccessService

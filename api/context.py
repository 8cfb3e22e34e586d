"""What the API's handlers are given: services built once in `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from api.services.integrations import IntegrationService
from api.services.job_logs import JobLogService
from api.services.records import RecordService
from api.services.retry import RetryService
from api.services.syncs import SyncService
from api.services.webhooks import WebhookService
from api.services.writes import WriteService
from pmsq.settings import Settings


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    session_factory: sessionmaker[Session]
    writes: WriteService
    integrations: IntegrationService
    retries: RetryService
    job_logs: JobLogService
    syncs: SyncService
    records: RecordService
    webhooks: WebhookService

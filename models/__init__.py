"""The job store: ORM models, pydantic schemas, database engine and migrations."""

from models.account import Account, ApiToken
from models.base import Base
from models.enums import Cadence, JobStatus, Vendor, WriteStatus
from models.idempotency import IdempotencyRecord
from models.integration import Integration
from models.job import Job, JobLog
from models.record import Record
from models.sync import DataDiff, SyncExecution, SyncSchedule
from models.webhook import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "Account",
    "ApiToken",
    "Base",
    "Cadence",
    "DataDiff",
    "IdempotencyRecord",
    "Integration",
    "Job",
    "JobLog",
    "JobStatus",
    "Record",
    "SyncExecution",
    "SyncSchedule",
    "Vendor",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WriteStatus",
]

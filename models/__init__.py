"""The job store: ORM models, pydantic schemas, database engine and migrations."""

from pmsq.models.account import Account, ApiToken
from pmsq.models.base import Base
from pmsq.models.enums import Cadence, JobStatus, Vendor, WriteStatus
from pmsq.models.idempotency import IdempotencyRecord
from pmsq.models.integration import Integration
from pmsq.models.job import Job, JobLog
from pmsq.models.normalization import EnumMapping
from pmsq.models.property import PropertyConfiguration
from pmsq.models.record import Record
from pmsq.models.sync import DataDiff, SyncExecution, SyncSchedule
from pmsq.models.webhook import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "Account",
    "ApiToken",
    "Base",
    "Cadence",
    "DataDiff",
    "EnumMapping",
    "IdempotencyRecord",
    "Integration",
    "Job",
    "JobLog",
    "JobStatus",
    "PropertyConfiguration",
    "Record",
    "SyncExecution",
    "SyncSchedule",
    "Vendor",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WriteStatus",
]

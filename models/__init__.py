"""The job store: ORM models, pydantic schemas, database engine and migrations."""

from models.account import Account, ApiToken
from models.base import Base
from models.enums import Cadence, JobStatus, Vendor, WriteStatus
from models.idempotency import IdempotencyRecord
from models.integration import Integration
from models.job import Job, JobLog
from models.record import Record

__all__ = [
    "Account",
    "ApiToken",
    "Base",
    "Cadence",
    "IdempotencyRecord",
    "Integration",
    "Job",
    "JobLog",
    "JobStatus",
    "Record",
    "Vendor",
    "WriteStatus",
]

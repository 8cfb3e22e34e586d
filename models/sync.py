"""Sync scheduling and execution: job schedules, executions with counts, data diffs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pmsq.models.base import Base, new_id, utcnow


class SyncType(StrEnum):
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"
    BACKSYNC = "BACKSYNC"


class SyncStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    #: A scheduled sync that did not run because a backsync held the integration.
    SKIPPED = "SKIPPED"


#: Executions that still hold their integration.
UNFINISHED_SYNC = frozenset({SyncStatus.PENDING, SyncStatus.RUNNING})


class SyncSchedule(Base):
    """One integration's sync cadence as beat sees it: the next due time, indexed.

    `next_run_at` is recomputed whenever the integration's schedule changes (by the API, in
    the same transaction) and after each fire (by beat), so a beat tick only reads rows that
    are due.
    """

    __tablename__ = "sync_schedules"
    __table_args__ = (Index("ix_sync_schedules_due", "status", "next_run_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"), unique=True)
    job_type: Mapped[str] = mapped_column(String(20), default="SYNC")
    #: ACTIVE or PAUSED (an inactive, archived or deleted integration).
    status: Mapped[str] = mapped_column(String(10), default="ACTIVE")
    #: Where the default cadence counts from (creation or the last cadence change).
    anchor_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncExecution(Base):
    """One sync run. The (schedule, scheduled_for) pair is unique: the fire key that makes two
    beat processes unable to start the same scheduled sync twice."""

    __tablename__ = "sync_executions"
    __table_args__ = (
        UniqueConstraint("schedule_id", "scheduled_for", name="uq_sync_executions_fire_key"),
        Index("ix_sync_executions_integration_created", "integration_id", "created_at"),
        Index("ix_sync_executions_integration_generation", "integration_id", "generation"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"))
    schedule_id: Mapped[str | None] = mapped_column(ForeignKey("sync_schedules.id"), default=None)
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None)
    type: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default=SyncStatus.PENDING.value)
    #: Models to read; empty means every model the vendor supports.
    models: Mapped[list[Any]] = mapped_column(default=list)
    #: The job that runs this sync through flow control.
    job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    insert_count: Mapped[int] = mapped_column(Integer, default=0)
    update_count: Mapped[int] = mapped_column(Integer, default=0)
    delete_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, default=0)
    total_count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    #: Order of this sync among its integration's syncs, taken when it first starts (one more
    #: than the newest before it); what its records are stamped with (`Record.seen_generation`).
    generation: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Where a retried run resumes: `{"model": index in models, "page": next page}`, committed
    #: with each page's records and counts; empty (or None, on rows older than it) before the
    #: first page.
    cursor: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Indexed: retention purges finished executions, oldest first.
    completed_at: Mapped[datetime | None] = mapped_column(default=None, index=True)

    def counts(self) -> dict[str, int]:
        """Seed 002's counts object."""
        return {
            "insert": self.insert_count,
            "update": self.update_count,
            "delete": self.delete_count,
            "error": self.error_count,
            "warnings": self.warning_count,
            "total": self.total_count,
        }


class DataDiff(Base):
    """A change a sync found in the PMS; kept 30 days."""

    __tablename__ = "data_diffs"
    __table_args__ = (Index("ix_data_diffs_integration_created", "integration_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"))
    execution_id: Mapped[str] = mapped_column(ForeignKey("sync_executions.id"), index=True)
    model: Mapped[str] = mapped_column(String(60))
    pms_id: Mapped[str] = mapped_column(String(200))
    #: NEW, UPDATE or DELETE.
    diff_type: Mapped[str] = mapped_column(String(10))
    #: For UPDATE: {field: {"old": ..., "new": ...}}.
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

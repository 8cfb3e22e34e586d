"""Polytomic's sync status shape, written from its public API definition, to judge pmsq's
`sync-status` answers. Extra fields are allowed (a client ignores them); types are strict."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr

ExecutionStatus = Literal[
    "created", "scheduled", "queued", "waiting", "running", "processing", "canceling",
    "canceled", "completed", "failed", "interrupted",
]  # fmt: skip


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ExecutionCounts(Shape):
    delete: StrictInt
    error: StrictInt
    insert: StrictInt
    total: StrictInt
    update: StrictInt
    upserts: StrictInt
    warnings: StrictInt


class Execution(Shape):
    completed_at: StrictStr | None
    counts: ExecutionCounts
    created_at: StrictStr | None
    errors: list[StrictStr]
    id: StrictStr
    started_at: StrictStr | None
    status: ExecutionStatus
    type: StrictStr


class SyncStatus(Shape):
    current_execution: Execution | None
    last_execution: Execution | None
    next_execution_time: StrictStr | None


class SyncStatusEnvelope(Shape):
    data: SyncStatus

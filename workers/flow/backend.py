"""The flow-control interface the dispatcher, runner and API use.

`redis_backend.RedisFlowControl` is the real one: every decision is an atomic Lua script on
Redis's clock, so any number of processes on any number of hosts share one set of limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from workers.flow.limits import Limits


@dataclass(frozen=True)
class Admission:
    """What one admission call decided for one integration."""

    #: "ok", "paused" or "nolimits" (the caller must `set_limits` and call again).
    status: str
    #: When the next admission may happen (us, Redis clock); None when the backlog is empty.
    next_us: int | None
    job_ids: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class DueIntegrations:
    now_us: int
    #: The score the claimed integrations were given; pass it back to `reschedule`.
    claim_us: int
    #: Earliest next admission time left in the ready set, None if it is empty.
    next_us: int | None
    integration_ids: Sequence[str]


@dataclass(frozen=True)
class Usage:
    """Live flow-control state of one integration, for the rate-limits endpoint."""

    in_flight: int
    backlog: int
    next_admission_us: int | None
    paused_until_us: int | None
    limits: Limits | None
    pms_reported: dict[str, str]
    now_us: int


class FlowControl(Protocol):
    def set_limits(self, integration_id: str, limits: Limits) -> None: ...

    def enqueue(self, integration_id: str, job_ids: Sequence[str], delay_s: float = 0.0) -> None:
        """Put jobs in the integration's backlog (due after `delay_s`) and wake a dispatcher."""
        ...

    def enqueue_many(self, batches: Mapping[str, Sequence[str]]) -> None:
        """Jobs due now of several integrations (id -> job ids), woken together."""
        ...

    def admit(self, integration_id: str, max_jobs: int, lease_s: float) -> Admission: ...

    def release(self, integration_id: str, job_id: str) -> int:
        """Free the job's concurrency slot; returns the backlog size left."""
        ...

    def extend(self, integration_id: str, job_id: str, lease_s: float) -> bool: ...

    def hold(self, integration_id: str, job_id: str, lease_s: float) -> bool:
        """Extend the job's lease, or take a free slot again if it lapsed; False if none."""
        ...

    def pace(self, integration_id: str) -> tuple[bool | None, float]:
        """May a request leave now? (allowed, seconds to wait before asking again); allowed
        is None when the integration's limits are missing and must be reloaded."""
        ...

    def pause(self, integration_id: str, seconds: float) -> int: ...

    def claim_due(self, max_integrations: int, claim_s: float) -> DueIntegrations: ...

    def reschedule(self, integration_id: str, claim_us: int, next_us: int | None) -> None: ...

    def wake(self, integration_id: str) -> None:
        """Make the integration due for admission now."""
        ...

    def record_pms_limits(self, integration_id: str, headers: dict[str, str]) -> None: ...

    def usage(self, integration_id: str) -> Usage: ...

    def in_backlog(self, integration_id: str, job_ids: Sequence[str]) -> list[bool]: ...

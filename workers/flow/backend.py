"""The flow-control interface the dispatcher, runner and API use.

`redis_backend.RedisFlowControl` is the real one: every decision is an atomic Lua script on
Redis's clock, so any number of processes on any number of hosts share one set of limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from pmsq.workers.flow.limits import Limits


@dataclass(frozen=True)
class Admission:
    """What one admission call decided for one integration."""

    #: "ok", "paused" or "nolimits" (the caller must `set_limits` and call again).
    status: str
    #: When the next admission may happen (us, Redis clock); None when the backlog is empty.
    next_us: int | None
    job_ids: Sequence[str] = field(default_factory=tuple)
    #: Whether the caller must write `next_us` to the ready set (`reschedule`): False when an
    #: earlier admission already had a time no later than it written there.
    wake: bool = True


def redis_time(now_us: int) -> datetime:
    """A reading of Redis's clock (us since the epoch) as an aware datetime: lease expiries
    stored in the job store are on this clock, so no host's clock decides a lease."""
    return datetime.fromtimestamp(now_us / 1_000_000, UTC)


class Pace(StrEnum):
    """What `pace` decided for one request."""

    #: Send now: the request slot is taken.
    GO = "go"
    #: Not yet: ask again after the wait.
    WAIT = "wait"
    #: The integration's limits are missing from Redis: reload them and ask again.
    NO_LIMITS = "no_limits"
    #: The asking claim no longer holds the job's lease: stop, send nothing.
    FENCED = "fenced"


class Paced(NamedTuple):
    """One pacing pass: the decision, how long to wait before asking again (WAIT), and on GO
    the slot taken (granted_us, next_us on Redis's clock), for `give_back`."""

    decision: Pace
    wait_s: float
    slot: tuple[int, int] | None = None


@dataclass(frozen=True)
class Held:
    """What `hold` or `renew` decided, and Redis's clock when it did."""

    held: bool
    now_us: int
    #: A `hold` asked to pace the first request too: the slot it was granted (granted_us,
    #: next_us, as `Paced.slot`), None when the request must be paced as usual.
    slot: tuple[int, int] | None = None


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
    def set_limits(self, integration_id: str, limits: Limits) -> None:
        """Write the limits unless Redis holds a newer version (`Limits.version_us`)."""
        ...

    def limits_versions(self, integration_ids: Sequence[str]) -> list[int | None]:
        """The version of each integration's limits in Redis (None: none there)."""
        ...

    def known_integrations(self) -> list[str]:
        """Every integration that ever had a backlog."""
        ...

    def enqueue(self, integration_id: str, job_ids: Sequence[str], delay_s: float = 0.0) -> None:
        """Put jobs in the integration's backlog (due after `delay_s`) and wake a dispatcher."""
        ...

    def enqueue_many(self, batches: Mapping[str, Sequence[str]], *, ahead: bool = False) -> None:
        """Jobs due now of several integrations (id -> job ids), woken together; with `ahead`,
        ahead of every job already waiting (jobs whose run was interrupted keep their turn)."""
        ...

    def admit(
        self, integration_id: str, max_jobs: int, lease_s: float, *, claimed: bool = False
    ) -> Admission:
        """Admit up to `max_jobs` of the integration's due backlog, each with a lease.
        `claimed`: the caller holds the integration's ready-set claim (`claim_due`) and will
        `reschedule` it whatever `Admission.wake` says."""
        ...

    def submit(
        self,
        integration_id: str,
        job_ids: Sequence[str],
        max_jobs: int,
        lease_s: float,
        *,
        delay_s: float = 0.0,
        ahead: bool = False,
    ) -> Admission:
        """`enqueue` (or, with `ahead`, at the head of the backlog) and `admit`, as one atomic
        step and one round trip. Does not touch the ready set: the caller wakes a dispatcher
        (`reschedule`) when the admission leaves `next_us`."""
        ...

    def finish(
        self,
        integration_id: str,
        member: str,
        max_jobs: int,
        lease_s: float,
        *,
        requeue: Sequence[tuple[str, float]] = (),
        pms_headers: Mapping[str, str] | None = None,
    ) -> Admission:
        """What a finished claim tells flow control, as one atomic step and one round trip:
        `release` of `member`, the jobs of `requeue` (job id, delay in seconds) into the
        backlog, `record_pms_limits`, then `admit` into the freed slot. Like `submit`, leaves
        the ready set to the caller."""
        ...

    def release(self, integration_id: str, member: str) -> int:
        """Free the lease of `member` (a claim member, or a job id for an admission lease)
        and only that one; returns the backlog size left."""
        ...

    def hold(
        self,
        integration_id: str,
        job_id: str,
        delivery: int,
        lease_s: float,
        pace_first: bool = False,
    ) -> Held:
        """Claim delivery `delivery` takes the job's lease (the admission's slot, or a free
        one if that lapsed); not held when every slot is taken. Call under the job's row lock.
        `pace_first`: in the same step, take the first request's slot if `pace` would grant
        it now (`Held.slot`), saving the claim a round trip."""
        ...

    def renew(self, integration_id: str, job_id: str, delivery: int, lease_s: float) -> Held:
        """Extend the claim's lease if it is still live; not held once it lapsed or was
        reclaimed (the worker must stop)."""
        ...

    def reclaim(self, integration_id: str, job_id: str, delivery: int) -> bool:
        """Remove the claim's lease if it has lapsed on Redis's clock; False while live."""
        ...

    def pace(self, integration_id: str, job_id: str, delivery: int) -> Paced:
        """May the claim's request leave now? (decision, seconds to wait, slot taken)."""
        ...

    def give_back(self, integration_id: str, slot: tuple[int, int]) -> bool:
        """Undo a GO whose request will not leave, unless a later pass was granted since."""
        ...

    def admission_live(self, integration_id: str, job_id: str) -> bool:
        """Whether the job holds a live admission lease (admitted, no worker claimed it yet)."""
        ...

    def enqueue_orphan(self, integration_id: str, job_id: str) -> bool:
        """Put a PENDING job back in its backlog unless it is there or admitted; call under the
        job's row lock."""
        ...

    def now_us(self) -> int:
        """Redis's clock, the one clock every lease decision uses."""
        ...

    def repair_ready(self) -> int:
        """Put back in the ready set every known integration with a backlog missing from it;
        returns how many were missing."""
        ...

    def pause(self, integration_id: str, seconds: float) -> int: ...

    def claim_due(self, max_integrations: int, claim_s: float) -> DueIntegrations: ...

    def reschedule(self, integration_id: str, claim_us: int, next_us: int | None) -> None: ...

    def record_pms_limits(self, integration_id: str, headers: dict[str, str]) -> None: ...

    def usage(self, integration_id: str) -> Usage: ...

    def in_backlog(self, integration_id: str, job_ids: Sequence[str]) -> list[bool]: ...

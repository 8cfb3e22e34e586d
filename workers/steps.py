"""Step handlers: what a claimed job does at the PMS, by kind of job.

A write step checks its fan-out, sends the job's request and says which child jobs follow; a
sync step reads the integration's models page by page into the record cache and ends its
execution. The runner claims, paces, fences and records both the same way: it only asks
`StepHandlers.handler_for` which one runs, and never branches on the kind itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from pmsq.errors import PmsError
from pmsq.metrics import MetricsRecorder
from pmsq.models.base import utcnow
from pmsq.models.enums import JobStatus
from pmsq.models.job import SYNC_ACTION
from pmsq.pms.connector import ChildSpec, Connector, ExchangeLog, Step, StepResult
from pmsq.pms.profiles import VendorProfile
from pmsq.pms.workflow import children_after
from pmsq.settings import Settings
from pmsq.workers.connectors import IntegrationSnapshot
from pmsq.workers.repository import JobRepository
from pmsq.workers.sync_runner import SyncLease, SyncRunner

#: Stands in for the record id a step will create, to count the children it will spawn.
_TO_BE_CREATED = "to-be-created"


@dataclass(frozen=True)
class GrantedSlot:
    """A request slot flow control granted together with the claim's lease."""

    #: (granted_us, next_us) on Redis's clock, as a pacing pass's, for `give_back`.
    slot: tuple[int, int]
    #: This host's monotonic time when the grant was asked: the slot is only good if the
    #: request leaves about one round trip after that, like any pacing pass's.
    asked_s: float


@dataclass(frozen=True)
class Claim:
    job_id: str
    root_job_id: str
    delivery: int
    attempt: int
    step: Step
    integration: IntegrationSnapshot
    #: The first request's slot, taken in the claim's own round trip when free then (the
    #: pacer uses it if still fresh, else gives it back); None: the pacer asks as usual.
    first_slot: GrantedSlot | None = None


@dataclass(frozen=True)
class Succeeded:
    result: StepResult
    children: list[ChildSpec]
    sync_status: str | None = None


@dataclass(frozen=True)
class Failed:
    error: PmsError


Outcome = Succeeded | Failed


class StepHandler(Protocol):
    def run(
        self, claim: Claim, connector: Connector, profile: VendorProfile, log: ExchangeLog
    ) -> Succeeded:
        """Perform the step; a `PmsError` (or `FencedOut`) says why it did not succeed."""
        ...

    def observe(
        self,
        integration_id: str,
        status: JobStatus | None,
        sync_status: str | None,
        metrics: MetricsRecorder,
    ) -> None:
        """Count what this kind of step reports beyond the runner's own metrics, once its
        outcome is recorded (`status`: the job's status after it)."""
        ...


class WriteStep:
    """One request of a write (or of a workflow step), and the children that follow it."""

    def __init__(self, session_factory: sessionmaker[Session], settings: Settings) -> None:
        self._session_factory = session_factory
        self._settings = settings

    def run(
        self, claim: Claim, connector: Connector, profile: VendorProfile, log: ExchangeLog
    ) -> Succeeded:
        self._check_fan_out(claim, len(children_after(profile, claim.step, _TO_BE_CREATED)))
        result = connector.execute(claim.step, log)
        return Succeeded(result, children_after(profile, claim.step, result.created_record_id))

    def observe(
        self,
        integration_id: str,
        status: JobStatus | None,
        sync_status: str | None,
        metrics: MetricsRecorder,
    ) -> None:
        pass

    def _check_fan_out(self, claim: Claim, spawning: int) -> None:
        """Fail a step whose children would breach PMSQ_MAX_JOBS_PER_TREE before it touches
        the PMS: failing it after the PMS created its record would leave a record the write
        reports as failed (and a retry of the write would create it again)."""
        if not spawning:
            return
        with self._session_factory() as session:
            root = JobRepository(session).get(claim.root_job_id)
            total = root.tree_total if root is not None else 0
        limit = self._settings.max_jobs_per_tree
        if total + spawning > limit:
            raise PmsError(
                f"spawning {spawning} child jobs would exceed the limit of {limit} jobs per "
                "write (PMSQ_MAX_JOBS_PER_TREE); nothing was sent to the PMS",
                retryable=False,
            )


class SyncStep:
    """A whole sync execution, resumed from its last committed page."""

    def __init__(
        self, session_factory: sessionmaker[Session], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._syncs = SyncRunner(session_factory, clock)

    def run(
        self, claim: Claim, connector: Connector, profile: VendorProfile, log: ExchangeLog
    ) -> Succeeded:
        execution_id = str(claim.step.payload["execution_id"])
        lease = SyncLease(claim.job_id, claim.delivery)
        execution = self._syncs.run(execution_id, claim.integration.id, lease, connector, log)
        return Succeeded(StepResult(), [], execution.status)

    def observe(
        self,
        integration_id: str,
        status: JobStatus | None,
        sync_status: str | None,
        metrics: MetricsRecorder,
    ) -> None:
        if status in (JobStatus.SUCCESS, JobStatus.FAILURE):
            label = sync_status or status.value
            metrics.count("pmsq_sync_outcomes", integration_id=integration_id, status=label)


class StepHandlers:
    """The handler of each kind of job: syncs by their action, every other job is a write."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._write = WriteStep(session_factory, settings)
        self._by_action: dict[str, StepHandler] = {SYNC_ACTION: SyncStep(session_factory, clock)}

    def handler_for(self, step: Step) -> StepHandler:
        return self._by_action.get(step.action, self._write)

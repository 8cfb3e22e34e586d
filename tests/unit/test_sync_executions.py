"""Every path that ends a sync job ends its execution: a sync execution left RUNNING would hold
off every later sync of its integration (a backsync) and never send SYNC_COMPLETE."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pmsq.models.account import Account
from pmsq.models.enums import JobStatus, Vendor
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.sync import SyncExecution, SyncStatus, SyncType
from pmsq.workers.aggregator import finish_job, finish_running_root
from pmsq.workers.sync_starter import backsync_running, build_sync

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def backsync(session_factory: sessionmaker[Session]) -> tuple[str, str, str]:
    """A RUNNING backsync and its RUNNING job: (integration id, execution id, job id)."""
    with session_factory.begin() as session:
        account = Account(name="acme")
        session.add(account)
        session.flush()
        integration = Integration(
            account_id=account.id, name="pms", integration_vendor=Vendor.SANDBOX.value
        )
        session.add(integration)
        session.flush()
        execution, job = build_sync(integration, SyncType.BACKSYNC, T0)
        assert job is not None
        execution.status = SyncStatus.RUNNING.value
        job.status = JobStatus.RUNNING.value
        session.add_all([execution, job])
        return integration.id, execution.id, job.id


@pytest.mark.parametrize(
    "error",
    [
        "job was delivered 5 times without finishing (its worker was lost each time)",
        "PMS answered 503: down (gave up after 4 attempts)",
    ],
)
def test_a_failed_sync_job_ends_its_execution(
    session_factory: sessionmaker[Session], backsync: tuple[str, str, str], error: str
) -> None:
    """Failed on the code before for the poison paths (claim and lease reclaim), which finish
    the job without its execution: the backsync stayed RUNNING and held its integration."""
    integration_id, execution_id, job_id = backsync
    with session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        finish_job(session, job, JobStatus.FAILURE, T0, max_jobs_per_tree=10, error=error)
    _assert_ended(session_factory, integration_id, execution_id, [error])


def test_a_sync_job_failed_in_one_update_ends_its_execution(
    session_factory: sessionmaker[Session], backsync: tuple[str, str, str]
) -> None:
    """The worker's one-UPDATE finish of a root job (`finish_running_root`) ends the
    execution as `finish_job` does."""
    integration_id, execution_id, job_id = backsync
    error = "PMS answered 400: bad page"
    with session_factory.begin() as session:
        finished = finish_running_root(
            session.connection(),
            session,
            job_id,
            JobStatus.FAILURE,
            T0,
            expected={},
            also={},
            listeners=lambda _account_id, _version: (),
            error=error,
        )
        assert finished is not None and finished.status == JobStatus.FAILURE
    _assert_ended(session_factory, integration_id, execution_id, [error])


def _assert_ended(
    session_factory: sessionmaker[Session],
    integration_id: str,
    execution_id: str,
    errors: list[str],
) -> None:
    with session_factory() as session:
        execution = session.get(SyncExecution, execution_id)
        assert execution is not None
        assert execution.status == SyncStatus.FAILURE.value
        assert execution.errors == errors
        assert execution.completed_at is not None
        assert not backsync_running(session, integration_id)

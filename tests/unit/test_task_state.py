"""The job task's Celery state is the job's: what Flower shows operators must not lie."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from celery.result import EagerResult
from sqlalchemy.orm import Session, sessionmaker

from pmsq.errors import JobFailed, JobRetrying
from pmsq.models.account import Account
from pmsq.models.enums import JobStatus, Vendor
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.workers import tasks
from pmsq.workers.app import app

#: What the task of a job left in a status ends as (run eagerly, in this process).
RunAs = Callable[[JobStatus | None, str], EagerResult]

DUE_AT = datetime(2026, 3, 1, 9, 0, 5, tzinfo=UTC)


@dataclass
class StubRunner:
    status: JobStatus | None

    def run(self, job_id: str) -> JobStatus | None:
        return self.status


@dataclass
class StubContext:
    runner: StubRunner
    session_factory: sessionmaker[Session]


@pytest.fixture
def job_id(session_factory: sessionmaker[Session]) -> str:
    with session_factory.begin() as session:
        account = Account(name="acme")
        session.add(account)
        session.flush()
        integration = Integration(
            account_id=account.id, name="pms", integration_vendor=Vendor.SANDBOX.value
        )
        session.add(integration)
        session.flush()
        job = Job(
            account_id=account.id,
            integration_id=integration.id,
            model="residents",
            action="CREATE",
            error="PMS answered 422: last_name is required",
            due_at=DUE_AT,
            created_at=datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        )
        job.root_job_id = job.id = "job-1"
        session.add(job)
    return "job-1"


@pytest.fixture
def run_as(session_factory: sessionmaker[Session]) -> Iterator[RunAs]:
    """Runs the real task eagerly with a runner that leaves the job in a given status."""

    def run(status: JobStatus | None, job_id: str) -> EagerResult:
        tasks.JobTask._context = StubContext(StubRunner(status), session_factory)  # type: ignore[assignment]
        return tasks.run_job.apply(args=[job_id], kwargs={"integration_id": "i", "step": "s"})

    try:
        yield run
    finally:
        tasks.JobTask._context = None


def test_a_failed_job_fails_its_task_with_the_job_error(run_as: RunAs, job_id: str) -> None:
    result = run_as(JobStatus.FAILURE, job_id)
    assert result.state == "FAILURE"
    assert isinstance(result.result, JobFailed)
    assert str(result.result) == "PMS answered 422: last_name is required"


def test_a_job_going_back_for_a_retry_marks_its_task_retried(run_as: RunAs, job_id: str) -> None:
    result = run_as(JobStatus.PENDING, job_id)
    assert result.state == "RETRY"
    retry = result.result
    assert isinstance(retry.exc, JobRetrying)
    assert str(retry.exc) == "PMS answered 422: last_name is required"
    assert retry.when == DUE_AT


def test_retry_sends_no_new_message(
    run_as: RunAs, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher re-admits a job that is due: the task must not re-send itself."""
    sent: list[object] = []
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *a, **k: sent.append((a, k)))
    monkeypatch.setattr(app, "send_task", lambda *a, **k: sent.append((a, k)))
    assert run_as(JobStatus.PENDING, job_id).state == "RETRY"
    assert sent == []


@pytest.mark.parametrize("status", [JobStatus.SUCCESS, None])
def test_other_runs_succeed_with_the_status_as_result(
    run_as: RunAs, job_id: str, status: JobStatus | None
) -> None:
    result = run_as(status, job_id)
    assert result.state == "SUCCESS"
    assert result.result == (status.value if status else None)


def test_an_unknown_job_still_fails_its_task(run_as: RunAs) -> None:
    result = run_as(JobStatus.FAILURE, "gone")
    assert result.state == "FAILURE"
    assert str(result.result) == "no error recorded"


def test_a_failed_task_is_acked_not_redelivered() -> None:
    """The job store already holds the failure: its message must not come back."""
    assert tasks.run_job.acks_late is True
    assert tasks.run_job.acks_on_failure_or_timeout is True
    assert JobFailed in tasks.run_job.throws

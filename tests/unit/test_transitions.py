"""The job state machine accepts exactly the moves its table allows, and stamps times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from pmsq.errors import IllegalTransition
from pmsq.models.enums import TERMINAL_STATUSES, JobStatus
from pmsq.models.job import Job
from pmsq.workers.transitions import transition

P, Q, R, S, F = (
    JobStatus.PENDING,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCESS,
    JobStatus.FAILURE,
)

#: Written out from the design, independently of `pmsq.workers.transitions.ALLOWED`:
#: the happy path, a retry (RUNNING -> PENDING), an admission handed back (QUEUED -> PENDING),
#: poison messages and tree-limit breaches (-> FAILURE before running).
EXPECTED_MOVES = {
    (P, Q),
    (P, F),
    (Q, R),
    (Q, P),
    (Q, F),
    (R, S),
    (R, F),
    (R, P),
}
ALL_PAIRS = list(itertools.product(JobStatus, JobStatus))
EARLIER = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = EARLIER + timedelta(minutes=5)


def make_job(status: JobStatus) -> Job:
    return Job(
        id="job-1",
        root_job_id="job-1",
        status=status.value,
        updated_at=EARLIER,
        started_at=None,
        finished_at=None,
        due_at=EARLIER,
        lease_expires_at=EARLIER + timedelta(seconds=30),
    )


def snapshot(job: Job) -> tuple[object, ...]:
    return (
        job.status,
        job.updated_at,
        job.started_at,
        job.finished_at,
        job.due_at,
        job.lease_expires_at,
    )


@pytest.mark.parametrize(("current", "new"), sorted(EXPECTED_MOVES), ids=str)
def test_allowed_move_is_accepted_and_stamped(current: JobStatus, new: JobStatus) -> None:
    job = make_job(current)

    transition(job, new, NOW)

    assert job.status == new.value
    assert job.updated_at == NOW
    assert job.started_at == (NOW if new == R else None)
    if new in TERMINAL_STATUSES:
        assert job.finished_at == NOW
        assert job.lease_expires_at is None
        assert job.due_at is None
    else:
        assert job.finished_at is None
        # Due time and lease are the caller's business on non-final moves.
        assert job.due_at == EARLIER
        assert job.lease_expires_at == EARLIER + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("current", "new"), [pair for pair in ALL_PAIRS if pair not in EXPECTED_MOVES], ids=str
)
def test_every_other_move_is_refused_and_leaves_the_job_untouched(
    current: JobStatus, new: JobStatus
) -> None:
    job = make_job(current)
    before = snapshot(job)

    with pytest.raises(IllegalTransition) as raised:
        transition(job, new, NOW)

    assert snapshot(job) == before
    assert f"{current.value} -> {new.value}" in str(raised.value)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_terminal_statuses_never_change(terminal: JobStatus) -> None:
    job = make_job(P)
    transition(job, Q, NOW)
    transition(job, R, NOW)
    transition(job, terminal, NOW)
    finished = snapshot(job)

    for new in JobStatus:
        with pytest.raises(IllegalTransition):
            transition(job, new, NOW + timedelta(hours=1))
    assert snapshot(job) == finished


def test_terminal_statuses_are_exactly_success_and_failure() -> None:
    assert {S, F} == TERMINAL_STATUSES


def test_a_retry_cycle_restamps_started_at_on_each_run() -> None:
    job = make_job(P)
    first_run = NOW
    transition(job, Q, first_run)
    transition(job, R, first_run)
    transition(job, P, first_run + timedelta(seconds=1))
    second_run = first_run + timedelta(seconds=10)
    transition(job, Q, second_run)
    transition(job, R, second_run)
    transition(job, S, second_run + timedelta(seconds=2))

    assert job.started_at == second_run
    assert job.finished_at == second_run + timedelta(seconds=2)
    assert job.updated_at == second_run + timedelta(seconds=2)

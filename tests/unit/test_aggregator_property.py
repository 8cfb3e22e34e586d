"""The aggregator's O(1) counters agree with a brute-force recomputation over random job trees.

Trees are grown the way the runner grows them: a job's children exist only once it has
finished (`finish_job(..., children=...)`), and any job whose row exists may finish next. After
every step, `write_outcome` (read from the root's counters) must equal what a brute force derives
from every row of the tree and the finishing order the test itself recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.errors import IllegalTransition
from pmsq.models.account import Account
from pmsq.models.base import Base
from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.enums import TERMINAL_STATUSES, JobStatus, WriteStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job, JobLog
from pmsq.pms.connector import ChildSpec
from pmsq.workers.aggregator import finish_job
from pmsq.workers.outcome import WriteOutcome, status_from_counts, write_outcome
from pmsq.workers.transitions import transition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
#: Roomy enough that random trees never reach it; the limit has its own tests below.
NO_LIMIT = 10_000
#: Largest tree the generator grows, so an example stays a few dozen transactions.
MAX_TREE = 14


@dataclass
class Store:
    session_factory: sessionmaker[Session]
    account_id: str
    integration_id: str

    def clear_jobs(self) -> None:
        with self.session_factory.begin() as session:
            session.execute(delete(JobLog))
            session.execute(delete(Job))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """One SQLite file per test function, reused (emptied) across hypothesis examples."""
    engine = make_engine(f"sqlite:///{tmp_path / 'aggregator.db'}")
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    try:
        with factory.begin() as session:
            account = Account(name="acme")
            session.add(account)
            session.flush()
            integration = Integration(
                account_id=account.id, name="acme-pms", integration_vendor="SANDBOX"
            )
            session.add(integration)
            session.flush()
            ids = (account.id, integration.id)
        yield Store(factory, *ids)
    finally:
        engine.dispose()


def insert_running_root(store: Store) -> str:
    with store.session_factory.begin() as session:
        root = Job(
            account_id=store.account_id,
            integration_id=store.integration_id,
            model="residents",
            action="CREATE",
            payload={"first_name": "Ada"},
            status=JobStatus.PENDING.value,
        )
        root.id = root.root_job_id = "root"
        session.add(root)
        transition(root, JobStatus.QUEUED, T0)
        transition(root, JobStatus.RUNNING, T0)
        return root.id


def finish(
    store: Store,
    job_id: str,
    status: JobStatus,
    now: datetime,
    *,
    max_jobs_per_tree: int = NO_LIMIT,
    error: str | None = None,
    created_record_id: str | None = None,
    children: list[ChildSpec] | None = None,
) -> list[str]:
    """Run `job_id` (admitting it first if PENDING) and record its outcome; returns child ids."""
    with store.session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        if job.status == JobStatus.PENDING.value:
            transition(job, JobStatus.QUEUED, now)
        if job.status == JobStatus.QUEUED.value:
            transition(job, JobStatus.RUNNING, now)
        spawned = finish_job(
            session,
            job,
            status,
            now,
            max_jobs_per_tree=max_jobs_per_tree,
            error=error,
            created_record_id=created_record_id,
            children=children or [],
        )
        session.flush()
        return [child.id for child in spawned]


def outcome_of(store: Store, root_id: str) -> WriteOutcome:
    with store.session_factory() as session:
        root = session.get(Job, root_id)
        assert root is not None
        return write_outcome(session, root)


@dataclass
class Finished:
    job_id: str
    status: JobStatus
    error: str | None
    created_record_id: str | None


@dataclass
class History:
    """What the test itself recorded, independent of the counters under test."""

    finished: list[Finished] = field(default_factory=list)


def brute_force(store: Store, root_id: str, history: History) -> WriteOutcome:
    """The write's outcome recomputed from every row of the tree and the recorded order."""
    with store.session_factory() as session:
        rows = session.scalars(select(Job).where(Job.root_job_id == root_id)).all()
    by_id = {row.id: row for row in rows}
    # Every job the test finished is a row of the tree with the outcome the test asked for.
    for item in history.finished:
        assert by_id[item.job_id].status == item.status.value
    statuses = [JobStatus(row.status) for row in rows]
    if any(status not in TERMINAL_STATUSES for status in statuses):
        write_status = WriteStatus.PENDING
    elif all(status == JobStatus.SUCCESS for status in statuses):
        write_status = WriteStatus.SUCCESS
    elif not any(status == JobStatus.SUCCESS for status in statuses):
        write_status = WriteStatus.FAILURE
    else:
        write_status = WriteStatus.PARTIAL_SUCCESS
    errors = [
        item.error or "unknown error"
        for item in history.finished
        if item.status == JobStatus.FAILURE
    ]
    created = next(
        (item.created_record_id for item in history.finished if item.created_record_id), None
    )
    return WriteOutcome(write_status, errors, created)


outcomes = st.one_of(
    st.tuples(
        st.just(JobStatus.SUCCESS),
        st.none(),
        st.one_of(st.none(), st.text("abc123", min_size=1, max_size=6)),
    ),
    st.tuples(
        st.just(JobStatus.FAILURE),
        st.one_of(st.none(), st.text(min_size=0, max_size=12)),
        st.none(),
    ),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_write_outcome_equals_brute_force_over_random_trees(
    store: Store, data: st.DataObject
) -> None:
    store.clear_jobs()
    root_id = insert_running_root(store)
    history = History()
    unfinished = [root_id]
    total = 1
    now = T0
    while unfinished:
        job_id = data.draw(st.sampled_from(unfinished), label="next job to finish")
        unfinished.remove(job_id)
        status, error, created = data.draw(outcomes, label=f"outcome of {job_id}")
        room = MAX_TREE - total
        n_children = 0
        if status == JobStatus.SUCCESS and room > 0:
            n_children = data.draw(st.integers(0, min(3, room)), label="children")
        specs = [
            ChildSpec("contacts", "CREATE", None, {"email_1": f"c{total + i}@example.com"})
            for i in range(n_children)
        ]
        now += timedelta(seconds=1)
        spawned = finish(
            store,
            job_id,
            status,
            now,
            error=error,
            created_record_id=created,
            children=specs,
        )
        assert len(spawned) == n_children
        total += n_children
        unfinished.extend(spawned)
        history.finished.append(Finished(job_id, status, error, created))

        assert outcome_of(store, root_id) == brute_force(store, root_id, history)
        if unfinished:
            assert outcome_of(store, root_id).write_status == WriteStatus.PENDING

    assert outcome_of(store, root_id).write_status != WriteStatus.PENDING
    with store.session_factory() as session:
        root = session.get(Job, root_id)
        assert root is not None
        assert (root.tree_total, root.tree_finished) == (total, total)


@given(
    total=st.integers(1, 50),
    finished=st.integers(0, 50),
    succeeded=st.integers(0, 50),
)
def test_status_from_counts_matches_its_definition(
    total: int, finished: int, succeeded: int
) -> None:
    finished = min(finished, total)
    succeeded = min(succeeded, finished)
    failed = finished - succeeded
    expected = (
        WriteStatus.PENDING
        if finished < total
        else WriteStatus.SUCCESS
        if failed == 0
        else WriteStatus.FAILURE
        if succeeded == 0
        else WriteStatus.PARTIAL_SUCCESS
    )
    assert status_from_counts(total, finished, succeeded, failed) == expected


def child_specs(n: int) -> list[ChildSpec]:
    return [
        ChildSpec("contacts", "CREATE", None, {"email_1": f"c{i}@example.com"}) for i in range(n)
    ]


def tree_rows(store: Store, root_id: str) -> list[Job]:
    with store.session_factory() as session:
        return list(session.scalars(select(Job).where(Job.root_job_id == root_id)).all())


def test_fan_out_past_the_limit_fails_the_spawning_job_and_spawns_nothing(store: Store) -> None:
    root_id = insert_running_root(store)

    spawned = finish(
        store,
        root_id,
        JobStatus.SUCCESS,
        T0,
        max_jobs_per_tree=3,
        created_record_id="r-1",
        children=child_specs(3),  # 1 + 3 jobs > 3
    )

    assert spawned == []
    rows = tree_rows(store, root_id)
    assert [row.id for row in rows] == [root_id]
    assert rows[0].status == JobStatus.FAILURE.value
    assert rows[0].error is not None
    assert "limit of 3 jobs" in rows[0].error
    assert "PMSQ_MAX_JOBS_PER_TREE" in rows[0].error
    outcome = outcome_of(store, root_id)
    assert outcome.write_status == WriteStatus.FAILURE
    assert outcome.errors == [rows[0].error]


def test_fan_out_up_to_the_limit_is_allowed_and_a_later_breach_fails_only_the_spawner(
    store: Store,
) -> None:
    root_id = insert_running_root(store)
    first, second = finish(
        store, root_id, JobStatus.SUCCESS, T0, max_jobs_per_tree=3, children=child_specs(2)
    )  # exactly 3 jobs: allowed

    assert (
        finish(store, first, JobStatus.SUCCESS, T0, max_jobs_per_tree=3, children=child_specs(1))
        == []
    )
    assert len(tree_rows(store, root_id)) == 3
    assert outcome_of(store, root_id).write_status == WriteStatus.PENDING

    finish(store, second, JobStatus.SUCCESS, T0, max_jobs_per_tree=3)
    outcome = outcome_of(store, root_id)
    assert outcome.write_status == WriteStatus.PARTIAL_SUCCESS
    assert len(outcome.errors) == 1
    assert "limit of 3 jobs per write" in outcome.errors[0]


def test_finish_job_refuses_a_non_final_status(store: Store) -> None:
    root_id = insert_running_root(store)

    with pytest.raises(IllegalTransition):
        finish(store, root_id, JobStatus.PENDING, T0)
    assert tree_rows(store, root_id)[0].status == JobStatus.RUNNING.value

"""Retention on SQLite and PostgreSQL: the purge deletes exactly what is old and final, in
bounded batches, and a write's status answers until its tree is purged.

Every test dates its rows against its own `NOW`, gives the purge a clock at `NOW`, and then
checks its own rows only (the module's database is shared by its tests).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.api import ApiHarness, api_harness

from pmsq.models.account import Account
from pmsq.models.base import new_id, utcnow
from pmsq.models.enums import JobStatus, Vendor
from pmsq.models.idempotency import IdempotencyRecord
from pmsq.models.integration import Integration
from pmsq.models.job import Job, JobLog
from pmsq.models.sync import DataDiff, SyncExecution, SyncStatus, SyncType
from pmsq.models.webhook import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from pmsq.pms.connector import ChildSpec
from pmsq.scheduler.retention import Retention
from pmsq.workers.aggregator import finish_job

RETENTION_DAYS = 30.0
TTL_S = 86_400.0
NOW = utcnow()
OLD = NOW - timedelta(days=RETENTION_DAYS, seconds=1)
RECENT = NOW - timedelta(days=RETENTION_DAYS - 1)


def retention(
    session_factory: sessionmaker[Session], now: datetime = NOW, batch_rows: int = 500
) -> Retention:
    return Retention(
        session_factory,
        retention_days=RETENTION_DAYS,
        idempotency_ttl_s=TTL_S,
        batch_rows=batch_rows,
        clock=lambda: now,
    )


def purge_in_batches(purger: Retention, batch_rows: int) -> list[int]:
    """Runs batches until none is left; each batch's count, checked against its bound."""
    counts = []
    while deleted := purger.purge_batch():
        assert deleted <= batch_rows
        counts.append(deleted)
        assert len(counts) < 10_000, "the purge does not converge"
    return counts


@pytest.fixture
def owner(session_factory: sessionmaker[Session]) -> tuple[str, str]:
    """A fresh account and integration: (account_id, integration_id)."""
    with session_factory.begin() as session:
        account = Account(name=f"acct-{uuid.uuid4().hex[:12]}")
        session.add(account)
        session.flush()
        integration = Integration(
            account_id=account.id, name="kept", integration_vendor=Vendor.SANDBOX.value
        )
        session.add(integration)
        session.flush()
        return account.id, integration.id


def add_tree(
    session_factory: sessionmaker[Session],
    owner: tuple[str, str],
    finished_at: datetime | None,
    *,
    children: int = 2,
    child_status: JobStatus = JobStatus.SUCCESS,
    logs_per_job: int = 2,
) -> tuple[list[str], list[str]]:
    """A write tree as the aggregator leaves it: (job ids, root first; job log ids)."""
    account_id, integration_id = owner
    root_id = new_id()
    job_ids = [root_id] + [new_id() for _ in range(children)]
    final = child_status in (JobStatus.SUCCESS, JobStatus.FAILURE)
    at = finished_at or NOW
    log_ids: list[str] = []
    with session_factory.begin() as session:
        for job_id in job_ids:
            is_root = job_id == root_id
            status = JobStatus.SUCCESS if is_root else child_status
            session.add(
                Job(
                    id=job_id,
                    root_job_id=root_id,
                    parent_job_id=None if is_root else root_id,
                    account_id=account_id,
                    integration_id=integration_id,
                    model="residents",
                    action="CREATE",
                    payload={},
                    status=status.value,
                    created_at=at - timedelta(minutes=5),
                    updated_at=at,
                    finished_at=at if status != JobStatus.PENDING else None,
                    tree_total=len(job_ids) if is_root else 0,
                    tree_finished=(len(job_ids) if final else 1) if is_root else 0,
                    tree_succeeded=(len(job_ids) if final else 1) if is_root else 0,
                    tree_finished_at=finished_at if is_root and final else None,
                )
            )
        session.flush()
        for job_id in job_ids:
            for attempt in range(logs_per_job):
                log = JobLog(
                    job_id=job_id,
                    attempt=attempt + 1,
                    method="POST",
                    url="http://127.0.0.1:9/residents",
                    response_body="x" * 100,
                    created_at=at,
                )
                session.add(log)
                session.flush()
                log_ids.append(log.id)
    return job_ids, log_ids


def existing(session_factory: sessionmaker[Session], model: Any, ids: list[str]) -> set[str]:
    with session_factory() as session:
        return set(session.scalars(select(model.id).where(model.id.in_(ids))).all())


def test_purge_deletes_old_final_trees_with_their_logs_and_nothing_else(
    session_factory: sessionmaker[Session], owner: tuple[str, str]
) -> None:
    old_jobs, old_logs = add_tree(session_factory, owner, OLD)
    recent_jobs, recent_logs = add_tree(session_factory, owner, RECENT)
    # Its root finished long ago, but a job of the tree is still waiting: not final.
    open_jobs, open_logs = add_tree(session_factory, owner, None, child_status=JobStatus.PENDING)
    with session_factory.begin() as session:
        root = session.get(Job, open_jobs[0])
        assert root is not None
        root.finished_at = OLD - timedelta(days=10)

    retention(session_factory).purge()

    every_job = old_jobs + recent_jobs + open_jobs
    every_log = old_logs + recent_logs + open_logs
    assert existing(session_factory, Job, every_job) == set(recent_jobs + open_jobs)
    assert existing(session_factory, JobLog, every_log) == set(recent_logs + open_logs)


def test_purge_runs_in_bounded_batches_and_removes_a_root_last(
    session_factory: sessionmaker[Session], owner: tuple[str, str]
) -> None:
    trees = [add_tree(session_factory, owner, OLD, children=3, logs_per_job=2) for _ in range(3)]
    jobs = [job_id for tree_jobs, _ in trees for job_id in tree_jobs]
    logs = [log_id for _, tree_logs in trees for log_id in tree_logs]
    roots = {tree_jobs[0] for tree_jobs, _ in trees}
    purger = retention(session_factory, batch_rows=4)
    seen_roots_only = False
    counts = []
    while deleted := purger.purge_batch():
        assert deleted <= 4
        counts.append(deleted)
        remaining = existing(session_factory, Job, jobs)
        if remaining:
            # Roots go last: while any job of these trees remains, every root still does.
            assert roots <= remaining
            seen_roots_only = seen_roots_only or remaining == roots
        assert len(counts) < 1000
    # 24 logs, 9 children and 3 roots in batches of at most 4 rows: at least 9 batches.
    assert len(counts) >= 9
    assert seen_roots_only
    assert existing(session_factory, Job, jobs) == set()
    assert existing(session_factory, JobLog, logs) == set()


def finish(
    session_factory: sessionmaker[Session],
    job_id: str,
    at: datetime,
    children: list[ChildSpec] | None = None,
) -> list[str]:
    with session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status = JobStatus.RUNNING.value
        spawned = finish_job(
            session,
            job,
            JobStatus.SUCCESS,
            at,
            max_jobs_per_tree=100,
            created_record_id=f"pms-{job_id[:8]}",
            children=children or [],
        )
        return [child.id for child in spawned]


@pytest.fixture
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[ApiHarness]:
    with api_harness(database_url, session_factory) as harness:
        yield harness


def test_a_write_status_answers_while_retained_and_is_404_after_the_purge(
    api: ApiHarness, session_factory: sessionmaker[Session]
) -> None:
    headers = api.token(f"acct-{uuid.uuid4().hex[:12]}")
    created = api.client.post(
        "/v1/admin/integrations/",
        json={
            "name": "r",
            "integration_vendor": "SANDBOX",
            "active": True,
            "base_url": "http://127.0.0.1:9/t",
        },
        headers=headers,
    )
    assert created.status_code == 200, created.text
    write = api.client.post(
        "/v1/residents/",
        json={"integration_id": created.json()["result"]["id"], "last_name": "Lovelace"},
        headers=headers,
    )
    assert write.status_code == 200, write.text
    root_id = write.json()["job_id"]
    started = utcnow()
    child = ChildSpec(model="residents", action="add_contact", target_id=None, payload={})
    [child_id] = finish(session_factory, root_id, started, [child])
    with session_factory() as session:
        root = session.get(Job, root_id)
        assert root is not None
        assert root.tree_finished_at is None  # its child is still to run
    last_finished = started + timedelta(hours=1)
    finish(session_factory, child_id, last_finished)
    with session_factory() as session:
        root = session.get(Job, root_id)
        assert root is not None
        assert root.tree_finished_at == last_finished

    status_path = f"/v1/admin/write-status/{root_id}"
    retention(session_factory, last_finished + timedelta(days=RETENTION_DAYS - 1)).purge()
    retained = api.client.get(status_path, headers=headers)
    assert retained.status_code == 200, retained.text
    assert retained.json()["write_status"] == "SUCCESS"

    retention(session_factory, last_finished + timedelta(days=RETENTION_DAYS, seconds=1)).purge()
    assert api.client.get(status_path, headers=headers).status_code == 404
    assert existing(session_factory, Job, [root_id, child_id]) == set()


def add_execution(
    session_factory: sessionmaker[Session],
    integration_id: str,
    status: SyncStatus,
    completed_at: datetime | None,
    diffs: int = 2,
) -> tuple[str, list[str]]:
    with session_factory.begin() as session:
        execution = SyncExecution(
            integration_id=integration_id,
            type=SyncType.MANUAL.value,
            status=status.value,
            created_at=(completed_at or NOW) - timedelta(minutes=1),
            completed_at=completed_at,
        )
        session.add(execution)
        session.flush()
        diff_ids = []
        for n in range(diffs):
            diff = DataDiff(
                integration_id=integration_id,
                execution_id=execution.id,
                model="residents",
                pms_id=f"r-{n}",
                diff_type="NEW",
                created_at=execution.created_at,
            )
            session.add(diff)
            session.flush()
            diff_ids.append(diff.id)
        return execution.id, diff_ids


def test_purge_deletes_old_finished_executions_but_the_latest_of_each_integration(
    session_factory: sessionmaker[Session], owner: tuple[str, str]
) -> None:
    _, integration_id = owner
    oldest, oldest_diffs = add_execution(
        session_factory, integration_id, SyncStatus.SUCCESS, OLD - timedelta(seconds=2)
    )
    skipped, _ = add_execution(
        session_factory, integration_id, SyncStatus.SKIPPED, OLD - timedelta(seconds=1), diffs=0
    )
    # The latest finished execution stays (sync-status' last_execution), however old it is.
    latest, latest_diffs = add_execution(session_factory, integration_id, SyncStatus.FAILURE, OLD)
    running, running_diffs = add_execution(
        session_factory, integration_id, SyncStatus.RUNNING, None
    )

    counts = purge_in_batches(retention(session_factory, batch_rows=1), batch_rows=1)

    assert len(counts) >= 4  # two diffs, then two executions, one row at a time
    kept = existing(session_factory, SyncExecution, [oldest, skipped, latest, running])
    assert kept == {latest, running}
    diffs = existing(session_factory, DataDiff, oldest_diffs + latest_diffs + running_diffs)
    assert diffs == set(latest_diffs + running_diffs)

    recent, _ = add_execution(session_factory, integration_id, SyncStatus.SUCCESS, RECENT)
    retention(session_factory).purge()
    # A newer one exists now, but `latest` is old: it goes; the recent one stays.
    assert existing(session_factory, SyncExecution, [latest, running, recent]) == {
        running,
        recent,
    }


def test_purge_deletes_old_finished_deliveries_with_their_attempts(
    session_factory: sessionmaker[Session], owner: tuple[str, str]
) -> None:
    account_id, _ = owner
    with session_factory.begin() as session:
        endpoint = WebhookEndpoint(
            account_id=account_id, url="https://hooks.example.com/x", secret_encrypted=b"x"
        )
        session.add(endpoint)
        session.flush()
        rows = {}
        for name, status, created_at in [
            ("old-success", DeliveryStatus.SUCCESS, OLD),
            ("old-failure", DeliveryStatus.FAILURE, OLD),
            ("old-pending", DeliveryStatus.PENDING, OLD),
            ("recent-success", DeliveryStatus.SUCCESS, RECENT),
        ]:
            delivery = WebhookDelivery(
                endpoint_id=endpoint.id,
                event="JOB_FAILURE",
                status=status.value,
                created_at=created_at,
            )
            session.add(delivery)
            session.flush()
            attempt = WebhookAttempt(delivery_id=delivery.id, attempt=1, created_at=created_at)
            session.add(attempt)
            session.flush()
            rows[name] = (delivery.id, attempt.id)

    retention(session_factory).purge()

    kept = {"old-pending", "recent-success"}
    deliveries = [delivery_id for delivery_id, _ in rows.values()]
    attempts = [attempt_id for _, attempt_id in rows.values()]
    assert existing(session_factory, WebhookDelivery, deliveries) == {rows[n][0] for n in kept}
    assert existing(session_factory, WebhookAttempt, attempts) == {rows[n][1] for n in kept}


def test_purge_deletes_idempotency_records_past_their_ttl(
    session_factory: sessionmaker[Session], owner: tuple[str, str]
) -> None:
    account_id, _ = owner
    ages_s = {"expired": TTL_S, "live": TTL_S - 60}
    ids = {}
    with session_factory.begin() as session:
        for name, age_s in ages_s.items():
            record = IdempotencyRecord(
                account_id=account_id,
                key=f"{name}-{uuid.uuid4()}",
                request_sha256="0" * 64,
                response_status=202,
                response_body={"job_id": "j"},
                created_at=NOW - timedelta(seconds=age_s),
            )
            session.add(record)
            session.flush()
            ids[name] = record.id

    retention(session_factory).purge()

    assert existing(session_factory, IdempotencyRecord, list(ids.values())) == {ids["live"]}

"""Job and write logs for the admin API: jobs, their attempts, raw PMS exchanges, writes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.pagination import PageRequest, paginate
from pmsq.api.signed_links import SignedLinks
from pmsq.errors import NotFound
from pmsq.models.base import utcnow
from pmsq.models.enums import JobStatus, WriteStatus, vendor_on_wire
from pmsq.models.integration import Integration
from pmsq.models.job import SYNC_ACTION, Job, JobLog
from pmsq.models.sync import SyncExecution
from pmsq.pms.profiles import CREATE, UPDATE, VALIDATE_THEN_CREATE
from pmsq.workers.outcome import status_from_counts

TIME_RANGES = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=30),
}
#: Root actions by the client's write category.
CATEGORY_ACTIONS = {CREATE: (CREATE, VALIDATE_THEN_CREATE), UPDATE: (UPDATE,)}
JOB_SORTABLE = {
    "created_at": Job.created_at,
    "updated_at": Job.updated_at,
    "status": Job.status,
    "finished_at": Job.finished_at,
}


def write_status_clause(status: WriteStatus) -> ColumnElement[bool]:
    """SQL for a root's write status, the same rule as `status_from_counts`."""
    done = Job.tree_finished >= Job.tree_total
    return {
        WriteStatus.PENDING: Job.tree_finished < Job.tree_total,
        WriteStatus.SUCCESS: and_(done, Job.tree_failed == 0),
        WriteStatus.FAILURE: and_(done, Job.tree_failed > 0, Job.tree_succeeded == 0),
        WriteStatus.PARTIAL_SUCCESS: and_(done, Job.tree_failed > 0, Job.tree_succeeded > 0),
    }[status]


def job_type(job: Job) -> str:
    return f"{job.model}.{job.action}"


def job_summary(job: Job, schedule_ids: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """A job as the job logs show it; `schedule_ids` maps sync jobs to their schedule."""
    property_id = job.payload.get("property_id") if isinstance(job.payload, dict) else None
    return {
        "id": job.id,
        "job_id": job.id,
        "job_schedule_id": (schedule_ids or {}).get(job.id),
        "associated_property_id": property_id if isinstance(property_id, str) else None,
        "root_job_id": job.root_job_id,
        "parent_job_id": job.parent_job_id,
        "retry_of_job_id": job.retry_of_job_id,
        "integration_id": job.integration_id,
        "job_type": job_type(job),
        "model": job.model,
        "action": job.action,
        "status": job.status,
        "attempts": job.attempts,
        "error": job.error if job.status == JobStatus.FAILURE.value else None,
        "created_record_id": job.created_record_id,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def log_summary(log: JobLog) -> dict[str, Any]:
    return {
        "id": log.id,
        "job_id": log.job_id,
        "attempt": log.attempt,
        "method": log.method,
        "url": log.url,
        "response_status": log.response_status,
        "duration_ms": round(log.duration_ms, 3),
        "error": log.error,
        "created_at": log.created_at.isoformat(),
    }


def write_summary(
    root: Job, vendor: str, job_log_id: str | None, error: str | None
) -> dict[str, Any]:
    """A write as the write logs show it (Propexo's fields, then pmsq's)."""
    status = status_from_counts(
        root.tree_total, root.tree_finished, root.tree_succeeded, root.tree_failed
    )
    return {
        "id": root.id,
        "created_at": root.created_at.isoformat(),
        "updated_at": root.updated_at.isoformat(),
        "job_id": root.id,
        "job_log_id": job_log_id,
        "status": status.value,
        "write_status": status.value,
        "integration_id": root.integration_id,
        "job_type": job_type(root),
        "error": error,
        "name": root.model,
        "vendor": vendor_on_wire(vendor),
        "model": root.model,
        "write_category": UPDATE if root.action == UPDATE else CREATE,
        "jobs_total": root.tree_total,
        "jobs_failed": root.tree_failed,
        "created_record_id": root.tree_created_record_id,
        "retry_of_job_id": root.retry_of_job_id,
    }


def schedule_ids_of(session: Session, jobs: Iterable[Job]) -> dict[str, str | None]:
    """The sync schedule each sync job among `jobs` ran for (scheduled syncs only)."""
    sync_ids = [job.id for job in jobs if job.action == SYNC_ACTION]
    if not sync_ids:
        return {}
    rows = session.execute(
        select(SyncExecution.job_id, SyncExecution.schedule_id).where(
            SyncExecution.job_id.in_(sync_ids)
        )
    ).all()
    return {job_id: schedule_id for job_id, schedule_id in rows if job_id is not None}


def log_data(log: JobLog) -> dict[str, Any]:
    """The raw request and response of one PMS call, as logged (secrets already redacted)."""
    return {
        "id": log.id,
        "job_id": log.job_id,
        "request": {
            "method": log.method,
            "url": log.url,
            "headers": log.request_headers,
            "body": log.request_body,
        },
        "response": {
            "status": log.response_status,
            "headers": log.response_headers,
            "body": log.response_body,
        },
        "duration_ms": log.duration_ms,
        "error": log.error,
    }


#: The job's fields a job log carries (Propexo's).
LOG_JOB_FIELDS = (
    "job_type",
    "status",
    "parent_job_id",
    "root_job_id",
    "job_schedule_id",
    "integration_id",
    "associated_property_id",
)


class JobLogService:
    def __init__(self, session_factory: sessionmaker[Session], links: SignedLinks) -> None:
        """`links` signs the links to raw job log data (`job-logs/{id}/data` redirects)."""
        self._session_factory = session_factory
        self._links = links

    def list_jobs(
        self,
        account_id: str,
        page: PageRequest,
        *,
        status: JobStatus | None,
        integration_id: str | None,
        job_type_filter: str | None,
    ) -> dict[str, Any]:
        stmt = select(Job).where(Job.account_id == account_id)
        if status is not None:
            stmt = stmt.where(Job.status == status.value)
        if integration_id is not None:
            stmt = stmt.where(Job.integration_id == integration_id)
        if job_type_filter is not None:
            model, _, action = job_type_filter.partition(".")
            stmt = stmt.where(Job.model == model)
            if action:
                stmt = stmt.where(Job.action == action)
        with self._session_factory() as session:
            result = paginate(session, stmt, page, JOB_SORTABLE, "created_at:desc", lambda j: j)
            schedules = schedule_ids_of(session, result["results"])
            result["results"] = [job_summary(job, schedules) for job in result["results"]]
            return result

    def job_attempts(
        self, account_id: str, job_id: str, include_all_jobs: bool
    ) -> list[dict[str, Any]]:
        """One entry per attempt of the job (and, if asked, of every job below it), parents
        before children."""
        with self._session_factory() as session:
            job = session.get(Job, job_id)
            if job is None or job.account_id != account_id:
                raise NotFound(f"no job with id '{job_id}'")
            jobs = [job]
            if include_all_jobs:
                jobs = _subtree(
                    session.scalars(select(Job).where(Job.root_job_id == job.root_job_id)).all(),
                    job.id,
                )
            logs = session.scalars(
                select(JobLog)
                .where(JobLog.job_id.in_([j.id for j in jobs]))
                .order_by(JobLog.created_at, JobLog.id)
            ).all()
            by_attempt: dict[tuple[str, int], list[JobLog]] = defaultdict(list)
            for log in logs:
                by_attempt[(log.job_id, log.attempt)].append(log)
            schedules = schedule_ids_of(session, jobs)
            entries = []
            for each in jobs:
                attempts = sorted(a for (j, a) in by_attempt if j == each.id)
                shown: list[int | None] = list(attempts) or [None]
                for attempt in shown:
                    last = attempt is None or attempt == attempts[-1]
                    entries.append(
                        {
                            **job_summary(each, schedules),
                            "job_id": each.id,
                            "attempt": attempt,
                            "attempt_status": each.status if last else "RETRIED",
                            "logs": [
                                log_summary(log)
                                for log in by_attempt.get((each.id, attempt or 0), [])
                            ],
                        }
                    )
            return entries

    def log(self, account_id: str, log_id: str) -> dict[str, Any]:
        """One PMS exchange with its job's fields (Propexo's job log)."""
        with self._session_factory() as session:
            log = self._owned_log(session, account_id, log_id)
            job = session.get(Job, log.job_id)
            assert job is not None, "a job log's job is deleted after it"
            summary = job_summary(job, schedule_ids_of(session, [job]))
            return {
                **log_summary(log),
                **{key: summary[key] for key in LOG_JOB_FIELDS},
            }

    def data_link(self, account_id: str, log_id: str) -> str:
        """A short-lived link to the log's raw data that needs no bearer token."""
        with self._session_factory() as session:
            self._owned_log(session, account_id, log_id)
        return self._links.link(log_id)

    def linked_data(self, log_id: str, expires: int, signature: str) -> dict[str, Any]:
        """The raw data behind a link `data_link` made; NotFound once it expired or if
        forged, exactly as for an unknown id."""
        if not self._links.valid(log_id, expires, signature):
            raise NotFound(f"no job log data at this link for '{log_id}' (expired?)")
        with self._session_factory() as session:
            log = session.get(JobLog, log_id)
            if log is None:
                raise NotFound(f"no job log with id '{log_id}'")
            return log_data(log)

    def writes(
        self,
        account_id: str,
        page: PageRequest,
        *,
        time_range: str | None,
        status: WriteStatus | None,
        integration_id: str | None,
        write_category: str | None,
    ) -> dict[str, Any]:
        """Writes, newest first; `write_category` is a model name (Propexo's) or CREATE /
        UPDATE (pmsq's)."""
        stmt = select(Job).where(
            Job.account_id == account_id, Job.root_job_id == Job.id, Job.action != SYNC_ACTION
        )
        if time_range is not None:
            stmt = stmt.where(Job.created_at >= utcnow() - TIME_RANGES[time_range])
        if status is not None:
            stmt = stmt.where(write_status_clause(status))
        if integration_id is not None:
            stmt = stmt.where(Job.integration_id == integration_id)
        if write_category in CATEGORY_ACTIONS:
            stmt = stmt.where(Job.action.in_(CATEGORY_ACTIONS[write_category]))
        elif write_category is not None:
            stmt = stmt.where(Job.model == write_category)
        with self._session_factory() as session:
            result = paginate(session, stmt, page, JOB_SORTABLE, "created_at:desc", lambda j: j)
            roots: list[Job] = result["results"]
            vendors = dict(
                session.execute(
                    select(Integration.id, Integration.integration_vendor).where(
                        Integration.id.in_({root.integration_id for root in roots})
                    )
                ).all()
            )
            latest = _latest_logs(session, [root.id for root in roots])
            errors = _first_errors(session, [root.id for root in roots])
            result["results"] = {
                "logs": [
                    write_summary(
                        root,
                        vendors[root.integration_id],
                        latest.get(root.id),
                        errors.get(root.id),
                    )
                    for root in roots
                ]
            }
            return result

    @staticmethod
    def _owned_log(session: Session, account_id: str, log_id: str) -> JobLog:
        row = session.execute(
            select(JobLog, Job.account_id)
            .join(Job, Job.id == JobLog.job_id)
            .where(JobLog.id == log_id)
        ).one_or_none()
        if row is None or row[1] != account_id:
            raise NotFound(f"no job log with id '{log_id}'")
        log: JobLog = row[0]
        return log


def _subtree(tree: Any, top_id: str) -> list[Job]:
    """`top_id` and every job below it, parents before children."""
    children: dict[str | None, list[Job]] = defaultdict(list)
    by_id = {}
    for job in tree:
        children[job.parent_job_id].append(job)
        by_id[job.id] = job
    ordered, stack = [], [by_id[top_id]]
    while stack:
        job = stack.pop(0)
        ordered.append(job)
        stack.extend(sorted(children[job.id], key=lambda j: (j.created_at, j.id)))
    return ordered


def _latest_logs(session: Session, root_ids: list[str]) -> dict[str, str]:
    """The id of the latest PMS exchange of each write tree."""
    if not root_ids:
        return {}
    rows = session.execute(
        select(Job.root_job_id, JobLog.id)
        .join(JobLog, JobLog.job_id == Job.id)
        .where(Job.root_job_id.in_(root_ids))
        .order_by(JobLog.created_at, JobLog.id)
    ).all()
    return {root_id: log_id for root_id, log_id in rows}


def _first_errors(session: Session, root_ids: list[str]) -> dict[str, str]:
    """The first final error of each write tree (the order write-status lists them in)."""
    if not root_ids:
        return {}
    rows = session.execute(
        select(Job.root_job_id, Job.error)
        .where(
            Job.root_job_id.in_(root_ids),
            Job.status == JobStatus.FAILURE.value,
            Job.error.is_not(None),
        )
        .order_by(Job.finish_seq.desc(), Job.id.desc())
    ).all()
    return {root_id: error for root_id, error in rows if error is not None}

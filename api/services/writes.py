"""Accepting a write: validate it against the integration's PMS, store the root job, admit it.

The answer is given once the root job is committed: a crash after that loses nothing, since
the dispatcher loop admits any PENDING job that is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.services.integrations import owned_integration
from models.base import new_id, utcnow
from models.enums import JobStatus
from models.integration import Integration
from models.job import Job
from models.record import Record
from pms.profiles import CREATE, KNOWN_MODELS, UPDATE, profile_for
from pms.workflow import first_step_action
from pmsq.errors import NotFound, ValidationFailed
from workers.aggregator import WriteOutcome, write_outcome
from workers.dispatch import Dispatcher
from workers.repository import JobRepository


@dataclass(frozen=True)
class AcceptedWrite:
    job_id: str
    data: dict[str, Any]


class WriteService:
    def __init__(self, session_factory: sessionmaker[Session], dispatcher: Dispatcher) -> None:
        self._session_factory = session_factory
        self._dispatcher = dispatcher

    def submit(
        self,
        account_id: str,
        model: str,
        body: Any,
        *,
        record_id: str | None = None,
        ignore_unknown_fields: bool = False,
    ) -> AcceptedWrite:
        """Store a CREATE (no `record_id`) or an UPDATE of `record_id` as a new root job."""
        if model not in KNOWN_MODELS:
            raise NotFound(
                f"unknown model '{model}'; pmsq writes {', '.join(sorted(KNOWN_MODELS))}",
                [{"field": "model", "reason": "unknown model"}],
            )
        if not isinstance(body, dict):
            raise ValidationFailed(
                "the request body must be a JSON object",
                [{"field": "body", "reason": "must be a JSON object"}],
            )
        fields = dict(body)
        integration_id = fields.pop("integration_id", None)
        action = CREATE if record_id is None else UPDATE
        now = utcnow()
        with self._session_factory.begin() as session:
            integration, target_id = self._resolve_target(
                session, account_id, model, integration_id, record_id
            )
            profile = profile_for(integration.integration_vendor)
            payload = profile.clean_payload(
                model, action, fields, ignore_unknown=ignore_unknown_fields
            )
            job_id = new_id()
            job = Job(
                id=job_id,
                root_job_id=job_id,
                account_id=account_id,
                integration_id=integration.id,
                model=model,
                action=first_step_action(profile, model, action),
                target_id=target_id,
                payload=payload,
                status=JobStatus.PENDING.value,
                due_at=now,
                created_at=now,
                updated_at=now,
            )
            session.add(job)
        self._dispatcher.submit(integration.id, [job.id])
        return AcceptedWrite(job.id, payload)

    def status(self, account_id: str, root_job_id: str) -> WriteOutcome:
        with self._session_factory() as session:
            job = JobRepository(session).get_for_account(root_job_id, account_id)
            if job is None or not job.is_root:
                raise NotFound(f"no write with job id '{root_job_id}'")
            return write_outcome(session, job)

    def _resolve_target(
        self,
        session: Session,
        account_id: str,
        model: str,
        integration_id: Any,
        record_id: str | None,
    ) -> tuple[Integration, str | None]:
        """The integration to write through, and the PMS id an UPDATE targets.

        An UPDATE's id is looked up in the record cache first (the integration is then
        implied, as in Propexo); an id not cached is taken as the PMS's own id, which needs
        `integration_id` in the body.
        """
        if record_id is not None:
            cached = session.scalars(
                select(Record)
                .join(Integration, Integration.id == Record.integration_id)
                .where(
                    or_(Record.id == record_id, Record.pms_id == record_id),
                    Record.model == model,
                    Integration.account_id == account_id,
                    Integration.deleted_at.is_(None),
                )
                .order_by(Record.synced_at.desc())
                .limit(1)
            ).first()
            if cached is not None:
                integration = session.get(Integration, cached.integration_id)
                assert integration is not None
                return integration, cached.pms_id
        if integration_id is None:
            raise ValidationFailed(
                "integration_id is required",
                [{"field": "integration_id", "reason": "required"}],
            )
        if not isinstance(integration_id, str):
            raise ValidationFailed(
                "integration_id must be a string",
                [{"field": "integration_id", "reason": "must be a string"}],
            )
        integration = owned_integration(session, account_id, integration_id)
        if not integration.active or integration.is_archived:
            raise ValidationFailed(
                f"integration '{integration_id}' is not active",
                [{"field": "integration_id", "reason": "integration is inactive or archived"}],
            )
        return integration, record_id

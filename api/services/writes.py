"""Accepting a write: validate it against the integration's PMS, store the root job, admit it.

The answer is given once the root job is committed, together with its Idempotency-Key and
that answer when the client sent a key, and put in its integration's backlog; admitting it is
left to the submitter (in the API, `Admissions`: threads of its own). A failure after the
commit (Redis down while the job is put in its backlog) still answers the job id: the
dispatcher's sweep enqueues PENDING jobs missing from Redis, so the write runs, and a client
retry with the key replays the answer instead of writing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.services.admission import Submitter
from pmsq.api.services.idempotency import IdempotencyKeys, IdempotentRequest, Replay
from pmsq.api.services.integrations import owned_integration
from pmsq.api.services.properties import check_property_enabled
from pmsq.errors import NotFound, ValidationFailed
from pmsq.logs import log_context
from pmsq.models.base import new_id, utcnow
from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.record import Record
from pmsq.models.schemas import WriteAccepted
from pmsq.pms.profiles import CREATE, UPDATE
from pmsq.pms.registry import KNOWN_MODELS, profile_for
from pmsq.pms.workflow import first_step_action
from pmsq.workers.outcome import WriteOutcome, write_outcome
from pmsq.workers.repository import JobRepository

logger = logging.getLogger(__name__)

#: HTTP status of an accepted write (stored with its Idempotency-Key, and replayed).
ACCEPTED = 200


@dataclass(frozen=True)
class AcceptedWrite:
    job_id: str
    data: dict[str, Any]

    @cached_property
    def _body(self) -> dict[str, Any]:
        return WriteAccepted(job_id=self.job_id, data=self.data).model_dump(mode="json")

    def answer(self) -> Replay:
        """The answer to send (and to store with an Idempotency-Key), built once."""
        return Replay(ACCEPTED, self._body)


class WriteService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        submitter: Submitter,
        keys: IdempotencyKeys,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._submitter = submitter
        self._keys = keys
        self._clock = clock

    def submit(
        self,
        account_id: str,
        model: str,
        body: Any,
        *,
        record_id: str | None = None,
        ignore_unknown_fields: bool = False,
        idempotency: IdempotentRequest | None = None,
    ) -> AcceptedWrite | Replay:
        """Store a CREATE (no `record_id`) or an UPDATE of `record_id` as a new root job.

        With `idempotency`, a repeat of a live key returns the first answer (a `Replay`) and
        stores nothing; a refused request (any error raised) stores no key either.
        """
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
        now = self._clock()
        try:
            stored = self._store(
                account_id, model, body, record_id, ignore_unknown_fields, idempotency, now
            )
        except IntegrityError:
            if idempotency is None:
                raise
            # A concurrent request with this key committed first: answer as a repeat of it.
            with self._session_factory.begin() as session:
                replay = self._keys.lookup(session, account_id, idempotency, now)
            if replay is None:
                raise
            return replay
        if isinstance(stored, Replay):
            return stored
        integration_id, accepted = stored
        try:
            # A new write's root job is its own root: the request's span (and the admission's,
            # and its logs) carry its ids.
            with log_context(
                job_id=accepted.job_id, root_job_id=accepted.job_id, integration_id=integration_id
            ):
                self._submitter.submit(integration_id, [accepted.job_id])
        except Exception as exc:
            logger.warning(
                "write %s is stored but was not enqueued (%s); the orphan sweep enqueues it",
                accepted.job_id,
                type(exc).__name__,
            )
        return accepted

    def _store(
        self,
        account_id: str,
        model: str,
        body: dict[str, Any],
        record_id: str | None,
        ignore_unknown_fields: bool,
        idempotency: IdempotentRequest | None,
        now: datetime,
    ) -> tuple[str, AcceptedWrite] | Replay:
        """One transaction: the key's lookup, the root job, and the key with its answer."""
        fields = dict(body)
        integration_id = fields.pop("integration_id", None)
        action = CREATE if record_id is None else UPDATE
        with self._session_factory.begin() as session:
            if idempotency is not None:
                replay = self._keys.lookup(session, account_id, idempotency, now)
                if replay is not None:
                    return replay
            integration, target_id = self._resolve_target(
                session, account_id, model, integration_id, record_id
            )
            check_property_enabled(session, integration, fields.get("property_id"))
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
            accepted = AcceptedWrite(job_id, payload)
            if idempotency is not None:
                self._keys.store(session, account_id, idempotency, accepted.answer(), now)
            return integration.id, accepted

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

"""Accepting a write: validate it against the integration's PMS, store the root job, admit it.

The answer is given once the root job is committed, together with its Idempotency-Key and
that answer when the client sent a key, and put in its integration's backlog; admitting it is
left to the submitter (in the API, `Admissions`: threads of its own). A failure after the
commit (Redis down while the job is put in its backlog) still answers the job id: the
dispatcher's sweep enqueues PENDING jobs missing from Redis, so the write runs, and a client
retry with the key replays the answer instead of writing twice.

A write without a key is one statement: the root job's INSERT, which takes the integration
from its row only while the row still has the facts the write was judged on
(`write_targets`), so a process judges writes on the integration it remembers and reads it
again only when it changed. Nothing else is read, and no Session runs it: its statements
run on a plain connection of the write engine (`write_engine`), which costs a fraction of a
Session's transaction and unit of work on the API's busiest path. On PostgreSQL that one
statement is sent on its own, in autocommit (one round trip instead of BEGIN, INSERT and
COMMIT): it is atomic by itself, and what a keyless write reads before it (a forgotten
integration, a cached record, a property's configuration) takes no lock and, read committed,
would see no more in a transaction block than out of one. SQLite keeps its `BEGIN IMMEDIATE`,
so a write is judged under the write lock there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Table,
    bindparam,
    insert,
    literal,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from pmsq.api.services.admission import Submitter
from pmsq.api.services.idempotency import IdempotencyKeys, IdempotentRequest, Replay
from pmsq.api.services.properties import check_property_enabled
from pmsq.api.services.write_targets import (
    UNCHANGED,
    WriteTarget,
    WriteTargets,
    read_cached_record,
    read_owned,
)
from pmsq.errors import Conflict, NotFound, PmsqError, ValidationFailed
from pmsq.logs import log_context
from pmsq.models.base import new_id, utcnow
from pmsq.models.db import write_engine
from pmsq.models.direct import DirectStatement
from pmsq.models.enums import JobStatus
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.pms.profiles import CREATE, UPDATE
from pmsq.pms.registry import KNOWN_MODELS, profile_for
from pmsq.pms.workflow import first_step_action
from pmsq.workers.outcome import WriteOutcome, write_outcome
from pmsq.workers.repository import JobRepository

logger = logging.getLogger(__name__)

#: HTTP status of an accepted write (stored with its Idempotency-Key, and replayed).
ACCEPTED = 200
#: Times one write may be judged before it is refused (409): on the remembered integration,
#: then on the integration as read just before, again each time its INSERT found the row
#: changed since, which takes another request changing it between the read and the INSERT
#: (on PostgreSQL each statement sees what was committed when it started).
MAX_JUDGEMENTS = 4
#: Columns of a root job that each write binds; the others are the model's constant defaults.
_PER_WRITE = (
    "id",
    "root_job_id",
    "model",
    "action",
    "target_id",
    "payload",
    "due_at",
    "created_at",
    "updated_at",
    "idempotency_key",
)


def _insert_root_job() -> Insert:
    """`INSERT INTO jobs ... SELECT ... FROM integrations WHERE <UNCHANGED>`: one root job when
    the integration's row still has the facts bound by `WriteTarget.unchanged_params`, no row
    otherwise. Those of `_PER_WRITE` are bound, the integration's and account's ids come from
    its row, the other columns take the model's constant defaults (a PENDING job with zero
    attempts, a tree of one; NULL where the default is None), as an ORM `Job` would."""
    jobs, integrations = cast(Table, Job.__table__), cast(Table, Integration.__table__)
    values: dict[str, ColumnElement[Any]] = {
        name: bindparam(name, type_=jobs.c[name].type) for name in _PER_WRITE
    }
    values["integration_id"] = integrations.c.id
    values["account_id"] = integrations.c.account_id
    values["status"] = literal(JobStatus.PENDING.value, jobs.c.status.type)
    for column in jobs.columns:
        default = column.default
        if column.key in values or default is None:
            continue
        if not isinstance(default, ScalarElementColumnDefault):
            # Computed per row (like `idempotency_key`): it must be in `_PER_WRITE`.
            raise TypeError(f"jobs.{column.key} has a per-row default: bind it per write")
        if default.arg is not None:
            values[column.key] = literal(default.arg, column.type)
    selected = select(*values.values()).where(UNCHANGED)
    return (
        insert(jobs).from_select(list(values), selected).execution_options(preserve_rowcount=True)
    )


#: Run directly on the write's connection (`DirectStatement`): every accepted write runs it.
_INSERT_ROOT_JOB = DirectStatement(_insert_root_job())


@dataclass(frozen=True)
class AcceptedWrite:
    job_id: str
    data: dict[str, Any]

    def answer(self) -> Replay:
        """The answer to send (and to store with an Idempotency-Key): a `WriteAccepted`."""
        return Replay(ACCEPTED, {"job_id": self.job_id, "data": self.data})


class WriteService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        submitter: Submitter,
        keys: IdempotencyKeys,
        clock: Callable[[], datetime] = utcnow,
        targets: WriteTargets | None = None,
    ) -> None:
        """`targets`: the integrations this process remembers for writes (its own unless
        given)."""
        self._session_factory = session_factory
        self._submitter = submitter
        self._keys = keys
        self._clock = clock
        self._targets = targets if targets is not None else WriteTargets()

    @cached_property
    def _engine(self) -> Engine:
        """What the write's statements run on, found on first use: an app is built (to list
        its routes, say) before any job store exists."""
        return write_engine(self._session_factory)

    @cached_property
    def _keyless(self) -> Engine:
        """What a write without a key runs on: autocommit on PostgreSQL (see above)."""
        if self._engine.dialect.name == "postgresql":
            return self._engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._engine

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
            with self._engine.begin() as connection:
                replay = self._keys.lookup(connection, account_id, idempotency, now)
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
        """One transaction: the key's lookup, the root job, and the key with its answer;
        without a key, the root job's INSERT alone (on PostgreSQL, not in a transaction
        block)."""
        fields = dict(body)
        integration_id = fields.pop("integration_id", None)
        write = _Write(
            account_id,
            model,
            CREATE if record_id is None else UPDATE,
            record_id,
            integration_id,
            fields,
            ignore_unknown_fields,
            now,
        )
        if idempotency is None:
            with self._keyless.begin() as connection:
                target, accepted = self._insert_root_job(connection, write)
            return target.integration_id, accepted
        with self._engine.begin() as connection:
            replay = self._keys.lookup(connection, account_id, idempotency, now)
            if replay is not None:
                return replay
            target, accepted = self._insert_root_job(connection, write)
            self._keys.store(connection, account_id, idempotency, accepted.answer(), now)
            return target.integration_id, accepted

    def _insert_root_job(
        self, connection: Connection, write: _Write
    ) -> tuple[WriteTarget, AcceptedWrite]:
        """Judge the write on its integration (the remembered one first) and insert its root
        job while the integration still is as judged.

        A write refused on a remembered integration is judged again on the integration as it
        is now, so that what a client is told never depends on what this process remembers.
        """
        for judgement in range(MAX_JUDGEMENTS):
            target, target_id, remembered = self._target(connection, write, fresh=judgement > 0)
            try:
                values = self._root_job(connection, write, target, target_id)
            except PmsqError:
                if not remembered:
                    raise
            else:
                params = values | target.unchanged_params()
                if _INSERT_ROOT_JOB.execute(connection, params).rowcount == 1:
                    return target, AcceptedWrite(values["id"], values["payload"])
            self._targets.forget(target.integration_id)
        raise Conflict(
            f"integration '{target.integration_id}' kept changing while the write was accepted; "
            "send it again",
            [{"field": "integration_id", "reason": "changed while the write was accepted"}],
        )

    def _target(
        self, connection: Connection, write: _Write, *, fresh: bool
    ) -> tuple[WriteTarget, str | None, bool]:
        """The integration to write through, the PMS id an UPDATE targets, and whether the
        integration is the remembered one (else it was read just now).

        An UPDATE's id is looked up in the record cache first (the integration is then
        implied, as in Propexo); an id not cached is taken as the PMS's own id, which needs
        `integration_id` in the body. Either way the integration must be active and not
        archived: one switched off takes no write, however the write names it.
        """
        if write.record_id is not None:
            cached = read_cached_record(connection, write.account_id, write.model, write.record_id)
            if cached is not None:
                target, pms_id = cached
                target.check_writable()
                return target, pms_id, False
        integration_id = write.integration_id
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
        if not fresh:
            # Only an active integration is remembered: the INSERT holds it still is.
            remembered = self._targets.get(write.account_id, integration_id)
            if remembered is not None:
                return remembered, write.record_id, True
        target = read_owned(connection, write.account_id, integration_id)
        target.check_writable()
        self._targets.remember(target)
        return target, write.record_id, False

    @staticmethod
    def _root_job(
        connection: Connection, write: _Write, target: WriteTarget, target_id: str | None
    ) -> dict[str, Any]:
        """The root job's per-write values (`_PER_WRITE`), once the write is judged valid for
        `target`: its property enabled, its fields those the vendor takes for the model."""
        check_property_enabled(
            connection,
            target.integration_id,
            target.new_properties_are_enabled,
            write.fields.get("property_id"),
        )
        profile = profile_for(target.vendor)
        payload = profile.clean_payload(
            write.model, write.action, write.fields, ignore_unknown=write.ignore_unknown_fields
        )
        job_id = new_id()
        return {
            "id": job_id,
            "root_job_id": job_id,
            "model": write.model,
            "action": first_step_action(profile, write.model, write.action),
            "target_id": target_id,
            "payload": payload,
            "due_at": write.now,
            "created_at": write.now,
            "updated_at": write.now,
            "idempotency_key": new_id(),
        }

    def status(self, account_id: str, root_job_id: str) -> WriteOutcome:
        with self._session_factory() as session:
            job = JobRepository(session).get_for_account(root_job_id, account_id)
            if job is None or not job.is_root:
                raise NotFound(f"no write with job id '{root_job_id}'")
            return write_outcome(session, job)


@dataclass(frozen=True)
class _Write:
    """One write request, as `WriteService._store` judges it."""

    account_id: str
    model: str
    #: The client's action: CREATE or UPDATE.
    action: str
    record_id: str | None
    #: As the body gave it (checked to be a string when it is used).
    integration_id: Any
    #: The body without `integration_id`.
    fields: dict[str, Any]
    ignore_unknown_fields: bool
    now: datetime

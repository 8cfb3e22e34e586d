"""The sandbox speaking Buildium's Open API, for tenants switched to it.

`POST /_sandbox/tenants/{tenant}/dialect {"dialect": "buildium"}` makes a tenant answer
`/t/{tenant}/v1/...` as Buildium does: `x-buildium-client-id` / `x-buildium-client-secret`
required (401), rental tenants, applicants, leases and rental units created with `POST`,
replaced with `PUT`, read one by one and listed with `offset` / `limit` (1 to 1000) and the
total in `X-Total-Count`, `lastupdatedfrom` narrowing lists; records are Buildium's read
messages (int32 `Id`, PascalCase fields, phones as `[{Number, Type}]`); a body missing a field
Buildium's message requires, or holding a value it refuses, is a 400 `ApiErrorResponse` whose
`Errors` name each field. Requests are recorded and faults injected as for any tenant (the
same `PmsService.run`), with faults' bodies in Buildium's error shape. Buildium has no
idempotency keys, so nothing is replayed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from pmsq.pms.sandbox.errors import RecordNotFound, SandboxError
from pmsq.pms.sandbox.middleware import current_entry
from pmsq.pms.sandbox.paths import BUILDIUM_RESOURCES, TENANT_PATTERN
from pmsq.pms.sandbox.pms_routes import response_of
from pmsq.pms.sandbox.service import Call, Outcome, PmsService, Reply
from pmsq.pms.sandbox.store import Store

JsonObject = dict[str, Any]

#: Buildium's auth headers; both must be present and non-empty.
AUTH_HEADERS = ("x-buildium-client-id", "x-buildium-client-secret")
#: Response header holding the size of a list's whole result set.
TOTAL_COUNT = "X-Total-Count"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
#: Buildium's id field.
ID = "Id"


class Dialect(StrEnum):
    GENERIC = "generic"
    BUILDIUM = "buildium"


class TenantDialects:
    """Which tenants speak Buildium; every other tenant speaks the generic dialect."""

    def __init__(self) -> None:
        self._dialects: dict[str, Dialect] = {}

    def set(self, tenant: str, dialect: Dialect) -> None:
        self._dialects[tenant] = dialect

    def get(self, tenant: str) -> Dialect:
        return self._dialects.get(tenant, Dialect.GENERIC)

    def clear(self) -> None:
        self._dialects.clear()


def error_body(message: str, errors: list[tuple[str, str]] | None = None) -> JsonObject:
    """Buildium's `ApiErrorResponse`."""
    return {
        "UserMessage": message,
        "ErrorCode": "ValidationFailed" if errors else "Error",
        "Errors": [{"Key": key, "Value": value} for key, value in errors or []],
    }


class Invalid(SandboxError):
    """Raised when a body breaks Buildium's rules; answered 400 with every field named."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors))
        self.errors = errors


# --- what each message requires ----------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """One resource's messages: required fields on POST and PUT, fields that are int32 ids."""

    post_required: tuple[str, ...]
    put_required: tuple[str, ...]
    ints: tuple[str, ...] = ()
    #: Kept from the stored record on PUT: the PUT message has no such field.
    kept_on_put: tuple[str, ...] = ()


RULES: Mapping[str, Rules] = {
    "residents": Rules(
        ("Address", "FirstName", "LastName", "LeaseId"),
        ("Address", "FirstName", "LastName"),
        ints=("LeaseId",),
        kept_on_put=("Leases", "CreatedDateTime"),
    ),
    "applicants": Rules(
        ("FirstName", "LastName", "SendRentalApplicationEmail"),
        ("FirstName", "LastName"),
        ints=("UnitId",),
        kept_on_put=("Status", "PropertyId"),
    ),
    "leases": Rules(
        ("LeaseFromDate", "LeaseType", "SendWelcomeEmail", "UnitId"),
        ("IsEvictionPending", "LeaseFromDate", "LeaseType", "UnitId"),
        ints=("UnitId",),
        kept_on_put=("CurrentTenants", "LeaseStatus", "CreatedDateTime", "AccountDetails"),
    ),
    "units": Rules(
        ("Address", "PropertyId", "UnitNumber"),
        ("Address", "UnitNumber"),
        ints=("PropertyId",),
        kept_on_put=("PropertyId",),
    ),
}
LEASE_TYPES = frozenset({"Fixed", "FixedWithRollover", "AtWill"})
#: PhoneNumbersMessage key -> PhoneNumberMessage.Type.
PHONE_TYPES = {"Home": "Home", "Work": "Office", "Mobile": "Cell", "Fax": "Fax"}


def check(model: str, body: JsonObject, *, create: bool) -> None:
    """Raises `Invalid` naming every field of `body` Buildium would refuse."""
    rules = RULES[model]
    errors: list[tuple[str, str]] = []
    for name in rules.post_required if create else rules.put_required:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors.append((name, f"The {name} field is required."))
    for name in rules.ints:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            errors.append((name, f"The value of {name} is not a valid int32."))
    address = body.get("Address")
    if isinstance(address, dict):
        for name in ("AddressLine1", "Country"):
            if not address.get(name):
                errors.append((f"Address.{name}", f"The {name} field is required."))
    email = body.get("Email")
    if email is not None and not (isinstance(email, str) and "@" in email):
        errors.append(("Email", "The Email field is not a valid e-mail address."))
    phones = body.get("PhoneNumbers")
    if isinstance(phones, dict):
        for kind, number in phones.items():
            if number is not None and not (isinstance(number, str) and 10 <= len(number) <= 20):
                errors.append((f"PhoneNumbers.{kind}", "must be between 10 and 20 characters."))
    lease_type = body.get("LeaseType")
    if lease_type is not None and lease_type not in LEASE_TYPES:
        errors.append(("LeaseType", f"'{lease_type}' is not a valid LeaseType."))
    if errors:
        raise Invalid(errors)


def stored_fields(model: str, body: JsonObject, now: str) -> JsonObject:
    """A write message as the record Buildium reads back (its read message's shape)."""
    fields = {k: v for k, v in body.items() if k not in ("SendRentalApplicationEmail",)}
    fields.pop("SendWelcomeEmail", None)
    phones = fields.get("PhoneNumbers")
    if isinstance(phones, dict):
        fields["PhoneNumbers"] = [
            {"Number": number, "Type": PHONE_TYPES.get(kind, "Other")}
            for kind, number in phones.items()
            if number
        ]
    if model == "residents" and "LeaseId" in fields:
        fields["Leases"] = [{ID: fields.pop("LeaseId")}]
    if model == "leases":
        tenant_ids = fields.pop("TenantIds", None) or []
        fields["CurrentTenants"] = [{ID: tenant_id} for tenant_id in tenant_ids]
        fields.setdefault("IsEvictionPending", False)
        fields.setdefault("LeaseStatus", "Active")
    if model == "applicants":
        fields.setdefault("Status", "New")
    fields["LastUpdatedDateTime"] = now
    return fields


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _updated_since(record: JsonObject, since: datetime) -> bool:
    raw = str(record.get("LastUpdatedDateTime") or "")
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")) >= since
    except ValueError:
        return False


# --- the operations -----------------------------------------------------------------------------


class BuildiumService:
    """Buildium's operations over the sandbox's store, run under its fault rules."""

    def __init__(self, store: Store, pms: PmsService) -> None:
        self._store = store
        self._pms = pms

    async def create(self, call: Call, raw: bytes) -> Reply:
        def operation() -> Outcome:
            body = _parse(raw)
            check(call.model, body, create=True)
            if call.model == "residents" and not self._store.exists(
                call.tenant, "leases", str(body["LeaseId"])
            ):
                raise Invalid([("LeaseId", f"Lease {body['LeaseId']} does not exist.")])
            now = _now()
            fields = {**stored_fields(call.model, body, now), "CreatedDateTime": now}
            record = self._store.create(call.tenant, call.model, fields, id_field=ID)
            return Outcome(Reply(201, record), record_id=str(record[ID]), applied=True)

        return await self._run(call, operation)

    async def add_note(self, call: Call, applicant_id: str, raw: bytes) -> Reply:
        """`POST /v1/applicants/{applicantId}/notes`: a note on an applicant that exists."""

        def operation() -> Outcome:
            body = _parse(raw)
            if not self._store.exists(call.tenant, "applicants", applicant_id):
                raise RecordNotFound(f"Applicant {applicant_id} not found.")
            note = body.get("Note")
            if not isinstance(note, str) or not note.strip():
                raise Invalid([("Note", "The Note field is required.")])
            if set(body) - {"Note"}:
                raise Invalid(
                    [(name, "is not a field of a note.") for name in sorted(set(body) - {"Note"})]
                )
            fields = {"Note": note, "ApplicantId": int(applicant_id), "LastUpdatedDateTime": _now()}
            record = self._store.create(call.tenant, call.model, fields, id_field=ID)
            return Outcome(Reply(201, record), record_id=str(record[ID]), applied=True)

        return await self._run(call, operation)

    async def read(self, call: Call, record_id: str) -> Reply:
        def operation() -> Outcome:
            return Outcome(Reply(200, self._store.get(call.tenant, call.model, record_id)))

        return await self._run(call, operation)

    async def replace(self, call: Call, record_id: str, raw: bytes) -> Reply:
        """Buildium's PUT: the message replaces every field it carries; fields only Buildium
        sets (ids, links, statuses) stay."""

        def operation() -> Outcome:
            body = _parse(raw)
            current = self._store.get(call.tenant, call.model, record_id)
            check(call.model, body, create=False)
            kept = {k: current[k] for k in RULES[call.model].kept_on_put if k in current}
            fields = {**stored_fields(call.model, body, _now()), **kept}
            record = self._store.replace(call.tenant, call.model, record_id, fields, id_field=ID)
            return Outcome(Reply(200, record), record_id=record_id, applied=True)

        return await self._run(call, operation)

    async def list(
        self, call: Call, query: Mapping[str, str], where: Mapping[str, str] | None = None
    ) -> Reply:
        """A page of the resource (`where`: field equality, a note's applicant), its total in
        `X-Total-Count`."""

        def operation() -> Outcome:
            offset = _int_param(query, "offset", 0, 0, None)
            limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
            found = self._store.find(call.tenant, call.model, where or {})
            since = query.get("lastupdatedfrom")
            if since is not None:
                try:
                    instant = datetime.fromisoformat(since.replace("Z", "+00:00"))
                except ValueError:
                    raise Invalid([("lastupdatedfrom", "must be YYYY-MM-DDTHH:MM:SSZ.")]) from None
                found = [r for r in found if _updated_since(r, instant)]
            page = found[offset : offset + limit]
            return Outcome(Reply(200, page, {TOTAL_COUNT: str(len(found))}))

        return await self._run(call, operation)

    async def _run(self, call: Call, operation: Callable[[], Outcome]) -> Reply:
        def answered() -> Outcome:
            try:
                return operation()
            except Invalid as exc:
                return Outcome(Reply(400, error_body("Validation failed.", exc.errors)))
            except RecordNotFound as exc:
                return Outcome(Reply(404, error_body(exc.message)))

        return await self._pms.run(call, answered, replayable=False, error_body=error_body)


def _parse(raw: bytes) -> JsonObject:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Invalid([("body", "The request body must be a JSON object.")])
    return body


def _int_param(
    query: Mapping[str, str], name: str, default: int, low: int, high: int | None
) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise Invalid([(name, f"must be an integer {bounds}.")])
    return int(raw)


# --- the routes ---------------------------------------------------------------------------------

Tenant = Annotated[str, Path(pattern=TENANT_PATTERN)]


def build_buildium_router(service: BuildiumService, dialects: TenantDialects) -> APIRouter:
    """`/t/{tenant}/v1/{resource}[/{id}]` for every resource in `BUILDIUM_RESOURCES`; mounted
    before the generic routes, which would take `v1` for a model."""
    router = APIRouter(prefix="/t/{tenant}/v1", tags=["pms (Buildium)"])

    def call_of(request: Request, tenant: str, model: str) -> Call | Response:
        if dialects.get(tenant) is not Dialect.BUILDIUM:
            return JSONResponse(error_body(f"tenant {tenant} does not speak Buildium"), 404)
        if not all(request.headers.get(name) for name in AUTH_HEADERS):
            return JSONResponse(error_body("The API key couldn't be authorized."), 401)
        return Call(
            tenant=tenant,
            method=request.method,
            model=model,
            path=request.url.path,
            idempotency_key=None,
            entry=current_entry(request),
        )

    @router.post("/applicants/{applicant_id}/notes")
    async def add_note(tenant: Tenant, applicant_id: int, request: Request) -> Response:
        call = call_of(request, tenant, "applicant_notes")
        if isinstance(call, Response):
            return call
        return response_of(await service.add_note(call, str(applicant_id), await request.body()))

    @router.get("/applicants/{applicant_id}/notes")
    async def list_notes(tenant: Tenant, applicant_id: int, request: Request) -> Response:
        call = call_of(request, tenant, "applicant_notes")
        if isinstance(call, Response):
            return call
        query = dict(request.query_params)
        where = {"ApplicantId": str(applicant_id)}
        return response_of(await service.list(call, query, where))

    for resource, model in BUILDIUM_RESOURCES.items():
        _add_resource(router, resource, model, service, call_of)
    return router


def _add_resource(
    router: APIRouter,
    resource: str,
    model: str,
    service: BuildiumService,
    call_of: Callable[[Request, str, str], Call | Response],
) -> None:
    async def create(tenant: Tenant, request: Request) -> Response:
        call = call_of(request, tenant, model)
        if isinstance(call, Response):
            return call
        return response_of(await service.create(call, await request.body()))

    async def listing(tenant: Tenant, request: Request) -> Response:
        call = call_of(request, tenant, model)
        if isinstance(call, Response):
            return call
        return response_of(await service.list(call, dict(request.query_params)))

    async def read(tenant: Tenant, record_id: int, request: Request) -> Response:
        call = call_of(request, tenant, model)
        if isinstance(call, Response):
            return call
        return response_of(await service.read(call, str(record_id)))

    async def replace(tenant: Tenant, record_id: int, request: Request) -> Response:
        call = call_of(request, tenant, model)
        if isinstance(call, Response):
            return call
        return response_of(await service.replace(call, str(record_id), await request.body()))

    router.add_api_route(f"/{resource}", create, methods=["POST"], name=f"create {resource}")
    router.add_api_route(f"/{resource}", listing, methods=["GET"], name=f"list {resource}")
    router.add_api_route(f"/{resource}/{{record_id}}", read, methods=["GET"])
    router.add_api_route(f"/{resource}/{{record_id}}", replace, methods=["PUT"])

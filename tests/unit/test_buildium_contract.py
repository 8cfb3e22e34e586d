"""Every request pmsq sends Buildium fits Buildium's published schema for that operation, and
every answer shaped as the schema shows is read back.

The models below are this project's own transcription of the operations pmsq uses from
Buildium's Open API v1 (`CreateRentalTenant`, `UpdateRentalTenant`, `CreateApplicant`,
`UpdateApplicant`, `CreateLease`, `UpdateLease`, `CreateRentalUnit`, `UpdateRentalUnit`, their
list operations): required fields are required, every other field is optional, and any field
the message does not have is an error (`extra="forbid"`), so a misspelt or invented field fails.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field

from pmsq.errors import PmsError, PmsThrottled
from pmsq.pms.connector import ChildSpec, Exchange, Step
from pmsq.pms.http_connector import HttpConnector
from pmsq.pms.profiles import CREATE, UPDATE
from pmsq.pms.registry import VENDORS
from pmsq.pms.workflow import children_after

BASE_URL = "https://api.buildium.com"
CREDENTIALS = {"client_id": "client-id-1234", "client_secret": "secret-5678"}

Int32 = int


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PhoneNumbersMessage(Message):
    Home: str | None = Field(None, min_length=10, max_length=20)
    Work: str | None = Field(None, min_length=10, max_length=20)
    Mobile: str | None = Field(None, min_length=10, max_length=20)
    Fax: str | None = Field(None, min_length=10, max_length=20)


class SaveAddressMessage(Message):
    AddressLine1: str = Field(min_length=1, max_length=100)
    AddressLine2: str | None = None
    AddressLine3: str | None = None
    City: str | None = None
    State: str | None = None
    PostalCode: str | None = None
    Country: str


class RentalTenantPut(Message):
    FirstName: str = Field(max_length=127)
    LastName: str = Field(max_length=127)
    Email: str | None = None
    AlternateEmail: str | None = None
    PhoneNumbers: PhoneNumbersMessage | None = None
    DateOfBirth: str | None = None
    Comment: str | None = None
    TaxId: str | None = None
    EmergencyContact: dict[str, Any] | None = None
    Address: SaveAddressMessage
    AlternateAddress: SaveAddressMessage | None = None
    MailingPreference: Literal["PrimaryAddress", "AlternateAddress"] | None = None


class RentalTenantPost(RentalTenantPut):
    LeaseId: Int32


class ApplicantPut(Message):
    UnitId: Int32 | None = None
    FirstName: str = Field(min_length=1)
    LastName: str = Field(min_length=1)
    Email: str | None = None
    PhoneNumbers: PhoneNumbersMessage | None = None


class ApplicantPost(ApplicantPut):
    SendRentalApplicationEmail: bool


LeaseTypes = Literal["Fixed", "FixedWithRollover", "AtWill"]


class LeasePost(Message):
    LeaseType: LeaseTypes
    UnitId: Int32
    LeaseFromDate: str
    LeaseToDate: str | None = None
    SendWelcomeEmail: bool
    Tenants: list[dict[str, Any]] | None = None
    TenantIds: list[Int32] | None = Field(None, max_length=5)
    ApplicantIds: list[Int32] | None = None
    Cosigners: list[dict[str, Any]] | None = None
    Rent: dict[str, Any] | None = None
    SecurityDeposit: dict[str, Any] | None = None
    ProratedFirstMonthRent: float | None = None
    ProratedLastMonthRent: float | None = None


class LeasePut(Message):
    LeaseType: LeaseTypes
    UnitId: Int32
    LeaseFromDate: str
    LeaseToDate: str | None = None
    IsEvictionPending: bool
    AutomaticallyMoveOutTenants: bool | None = None


BedroomsEnum = Literal[
    "NotSet", "Studio", "OneBed", "TwoBed", "ThreeBed", "FourBed", "FiveBed", "SixBed",
    "SevenBed", "EightBed", "NineBedPlus",
]  # fmt: skip
BathroomsEnum = Literal[
    "NotSet", "OneBath", "OnePointFiveBath", "TwoBath", "TwoPointFiveBath", "ThreeBath",
    "FourBath", "FiveBath", "FivePlusBath", "ThreePointFiveBath", "FourPointFiveBath",
]  # fmt: skip


class RentalUnitPut(Message):
    UnitNumber: str = Field(min_length=1, max_length=30)
    UnitSize: Int32 | None = None
    MarketRent: float | None = None
    Address: SaveAddressMessage
    UnitBedrooms: BedroomsEnum | None = None
    UnitBathrooms: BathroomsEnum | None = None
    Description: str | None = None


class RentalUnitPost(RentalUnitPut):
    PropertyId: Int32


#: (model, collection path, POST message, PUT message)
OPERATIONS: list[tuple[str, str, type[Message], type[Message]]] = [
    ("residents", "/v1/leases/tenants", RentalTenantPost, RentalTenantPut),
    ("applicants", "/v1/applicants", ApplicantPost, ApplicantPut),
    ("leases", "/v1/leases", LeasePost, LeasePut),
    ("units", "/v1/rentals/units", RentalUnitPost, RentalUnitPut),
]

#: A full unified create per model (every writable field), as a client could send it.
CREATES: dict[str, dict[str, Any]] = {
    "residents": {
        "first_name": "Ada", "last_name": "Lovelace", "email_1": "ada@example.com",
        "phone_1": "(555) 010-0199", "notes": "prefers email", "date_of_birth": "1990-12-10",
        "lease_id": "41", "address_1": "1 Main St", "address_2": "Apt 2", "city": "Boston",
        "state": "MA", "zip": "02101", "country": "UnitedStates",
    },
    "applicants": {
        "first_name": "Grace", "last_name": "Hopper", "email_1": "grace@example.com",
        "phone_1": "(555) 010-0100", "unit_id": "7",
    },
    "leases": {
        "unit_id": "7", "resident_id": "12", "start_date": "2026-01-01",
        "end_date": "2026-12-31", "lease_type": "Fixed",
    },
    "units": {
        "name": "4B", "property_id": "3", "bedrooms": 2, "bathrooms": 1.5,
        "rent_amount_market_in_cents": 185000, "description": "corner", "address_1": "1 Main St",
        "address_2": None, "city": "Boston", "state": "MA", "zip": "02101",
        "country": "UnitedStates",
    },
}  # fmt: skip

#: Records as Buildium's read messages show them (TenantMessage, ApplicantMessage, ...).
RECORDS: dict[str, dict[str, Any]] = {
    "residents": {
        "Id": 90, "FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com",
        "AlternateEmail": "ada@alt.example.com",
        "PhoneNumbers": [{"Number": "(555) 010-0101", "Type": "Home"},
                         {"Number": "(555) 010-0199", "Type": "Cell"}],
        "CreatedDateTime": "2026-05-01T12:00:00Z", "DateOfBirth": "1990-12-10",
        "Address": {"AddressLine1": "1 Main St", "City": "Boston", "State": "MA",
                    "PostalCode": "02101", "Country": "UnitedStates"},
        "MailingPreference": "PrimaryAddress", "Leases": [{"Id": 41}], "Comment": "vip",
        "TaxId": "123-12-1234",
    },
    "applicants": {
        "Id": 91, "ApplicantGroupId": 5, "PropertyId": 3, "UnitId": 7, "FirstName": "Grace",
        "LastName": "Hopper", "Email": "grace@example.com",
        "PhoneNumbers": [{"Number": "(555) 010-0100", "Type": "Cell"}], "Status": "New",
        "LastUpdatedDateTime": "2026-05-01T12:00:00Z",
    },
    "leases": {
        "Id": 41, "PropertyId": 3, "UnitId": 7, "UnitNumber": "4B",
        "LeaseFromDate": "2026-01-01", "LeaseToDate": "2026-12-31", "LeaseType": "Fixed",
        "LeaseStatus": "Active", "IsEvictionPending": False, "TermType": "Standard",
        "CurrentTenants": [{"Id": 12}], "AccountDetails": {"SecurityDeposit": 500, "Rent": 1850},
        "AutomaticallyMoveOutTenants": False,
    },
    "units": {
        "Id": 7, "PropertyId": 3, "UnitNumber": "4B", "MarketRent": 1850.0,
        "Address": {"AddressLine1": "1 Main St", "Country": "UnitedStates"},
        "UnitBedrooms": "TwoBed", "UnitBathrooms": "OnePointFiveBath", "UnitSize": 700,
        "Description": "corner", "IsUnitListed": False, "IsUnitOccupied": True,
    },
}  # fmt: skip


class Buildium:
    """A mock Buildium answering every operation with the spec's shapes."""

    def __init__(self, model: str, total: int = 1) -> None:
        self.record = RECORDS[model]
        self.total = total
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST":
            return httpx.Response(201, json=self.record, headers={"Location": "x"})
        if request.method == "PUT":
            return httpx.Response(200, json={**self.record, **json.loads(request.content)})
        if request.url.params.get("limit") is None:
            return httpx.Response(200, json=self.record)
        return httpx.Response(200, json=[self.record], headers={"X-Total-Count": str(self.total)})

    def connector(self) -> HttpConnector:
        return VENDORS.get("BUILDIUM").connector(
            base_url=BASE_URL,
            credentials=CREDENTIALS,
            client=httpx.Client(transport=httpx.MockTransport(self)),
        )


def step(model: str, action: str, payload: dict[str, Any], **extra: Any) -> Step:
    target = None if action == CREATE else str(RECORDS[model]["Id"])
    return Step(model, action, target, payload, idempotency_key="k-1", **extra)


def assert_authenticated(request: httpx.Request) -> None:
    assert request.headers["x-buildium-client-id"] == CREDENTIALS["client_id"]
    assert request.headers["x-buildium-client-secret"] == CREDENTIALS["client_secret"]
    assert "idempotency-key" not in request.headers  # Buildium has none


@pytest.mark.parametrize(
    ("model", "path", "post", "put"), OPERATIONS, ids=[o[0] for o in OPERATIONS]
)
def test_a_create_sends_the_post_message_and_reads_the_record_back(
    model: str, path: str, post: type[Message], put: type[Message]
) -> None:
    pms = Buildium(model)

    result = pms.connector().execute(step(model, CREATE, CREATES[model]), lambda e: None)

    [request] = pms.requests
    assert (request.method, request.url.path) == ("POST", path)
    assert request.headers["content-type"] == "application/json"
    assert_authenticated(request)
    post.model_validate_json(request.content)
    assert result.created_record_id == str(RECORDS[model]["Id"])
    assert result.record is not None and result.record["id"] == result.created_record_id


@pytest.mark.parametrize(
    ("model", "path", "post", "put"), OPERATIONS, ids=[o[0] for o in OPERATIONS]
)
def test_an_update_reads_the_record_then_puts_it_whole_with_the_change(
    model: str, path: str, post: type[Message], put: type[Message]
) -> None:
    pms = Buildium(model)
    record_id = RECORDS[model]["Id"]
    change = {
        "leases": {"end_date": "2027-06-30"},
        "units": {"rent_amount_market_in_cents": 190000},
    }.get(model, {"email_1": "new@example.com"})

    result = pms.connector().execute(step(model, UPDATE, change), lambda e: None)

    read, write = pms.requests
    assert (read.method, read.url.path) == ("GET", f"{path}/{record_id}")
    assert (write.method, write.url.path) == ("PUT", f"{path}/{record_id}")
    for request in (read, write):
        assert_authenticated(request)
    sent = put.model_validate_json(write.content).model_dump(exclude_none=True)
    # What the client did not mention is what Buildium held: a PUT must not clear it.
    kept = {k: v for k, v in RECORDS[model].items() if k in sent and k not in ("PhoneNumbers",)}
    changed = {"Email", "LeaseToDate", "MarketRent"}
    assert {k: v for k, v in sent.items() if k in kept and k not in changed} == {
        k: v for k, v in kept.items() if k not in changed
    }
    assert result.record is not None
    assert {k: result.record[k] for k in change} == change


def test_an_update_keeps_every_phone_of_a_tenant_and_changes_the_mobile() -> None:
    pms = Buildium("residents")

    pms.connector().execute(
        step("residents", UPDATE, {"phone_1": "(555) 010-0222"}), lambda e: None
    )

    sent = json.loads(pms.requests[1].content)
    assert sent["PhoneNumbers"] == {"Home": "(555) 010-0101", "Mobile": "(555) 010-0222"}
    assert sent["Address"]["City"] == "Boston" and sent["TaxId"] == "123-12-1234"


@pytest.mark.parametrize(
    ("model", "path", "post", "put"), OPERATIONS, ids=[o[0] for o in OPERATIONS]
)
def test_a_page_is_offset_and_limit_and_the_total_header_says_whether_more_follow(
    model: str, path: str, post: type[Message], put: type[Message]
) -> None:
    pms = Buildium(model, total=3)
    connector = pms.connector()

    records, more = connector.list_page(model, 2, 1, lambda e: None)
    _, more_after_last = connector.list_page(model, 3, 1, lambda e: None)

    request = pms.requests[0]
    assert (request.method, request.url.path) == ("GET", path)
    assert dict(request.url.params) == {"offset": "1", "limit": "1"}
    assert_authenticated(request)
    assert (more, more_after_last) == (True, False)
    assert records[0]["id"] == str(RECORDS[model]["Id"])


def test_records_read_back_in_unified_fields() -> None:
    pages = {
        model: Buildium(model).connector().list_page(model, 1, 50, lambda e: None)[0][0]
        for model in RECORDS
    }

    assert pages["residents"] == {
        "id": "90", "first_name": "Ada", "last_name": "Lovelace", "email_1": "ada@example.com",
        "phone_1": "(555) 010-0199", "notes": "vip", "date_of_birth": "1990-12-10",
        "lease_id": "41", "address_1": "1 Main St", "city": "Boston", "state": "MA",
        "zip": "02101", "country": "UnitedStates",
    }  # fmt: skip
    assert pages["leases"] == {
        "id": "41", "unit_id": "7", "resident_id": "12", "start_date": "2026-01-01",
        "end_date": "2026-12-31", "lease_type": "Fixed", "rent_amount_in_cents": 185000,
        "property_id": "3", "status": "Active",
    }  # fmt: skip
    assert pages["units"]["bedrooms"] == 2 and pages["units"]["bathrooms"] == 1.5
    assert pages["applicants"]["phone_1"] == "(555) 010-0100"
    assert pages["applicants"]["status"] == "New"


def test_a_validation_error_is_final_and_names_the_fields_both_ways() -> None:
    body = {
        "UserMessage": "Validation failed.",
        "ErrorCode": "ValidationFailed",
        "Errors": [
            {"Key": "LastName", "Value": "The LastName field is required."},
            {"Key": "LeaseId", "Value": "Lease 41 does not exist."},
        ],
    }
    pms = Buildium("residents")
    connector = VENDORS.get("BUILDIUM").connector(
        base_url=BASE_URL,
        credentials=CREDENTIALS,
        client=httpx.Client(
            transport=httpx.MockTransport(lambda r: httpx.Response(400, json=body))
        ),
    )
    exchanges: list[Exchange] = []

    with pytest.raises(PmsError) as raised:
        connector.execute(step("residents", CREATE, CREATES["residents"]), exchanges.append)

    assert raised.value.retryable is False and raised.value.outcome_unknown is False
    assert "last_name (LastName): The LastName field is required." in raised.value.message
    assert "lease_id (LeaseId): Lease 41 does not exist." in raised.value.message
    assert pms.requests == [] and exchanges[0].response_status == 400


def test_a_429_pauses_for_its_retry_after() -> None:
    throttled = httpx.Response(
        429, json={"UserMessage": "Too many requests"}, headers={"Retry-After": "3"}
    )
    connector = VENDORS.get("BUILDIUM").connector(
        base_url=BASE_URL,
        credentials=CREDENTIALS,
        client=httpx.Client(transport=httpx.MockTransport(lambda r: throttled)),
    )

    with pytest.raises(PmsThrottled) as raised:
        connector.list_page("leases", 1, 10, lambda e: None)

    assert raised.value.retry_after_s == 3.0
    assert "Too many requests" in raised.value.message


def test_a_re_attempted_create_reads_back_what_was_updated_since_the_write_was_accepted() -> None:
    pms = Buildium("applicants")
    accepted_at = datetime(2026, 5, 1, 11, 59, 30, 250_000, tzinfo=UTC)
    payload = {"first_name": "Grace", "last_name": "Hopper", "email_1": "grace@example.com"}

    result = pms.connector().execute(
        step("applicants", CREATE, payload, outcome_unknown=True, accepted_at=accepted_at),
        lambda e: None,
    )

    [read] = pms.requests  # found: nothing is created twice
    assert (read.method, read.url.path) == ("GET", "/v1/applicants")
    assert read.url.params["lastupdatedfrom"] == "2026-05-01T11:59:30Z"
    assert result.created_record_id == "91"


def test_a_model_buildium_lacks_is_refused_before_anything_is_sent() -> None:
    pms = Buildium("residents")

    contact = Step("contacts", CREATE, None, {"email_1": "a@example.com"}, idempotency_key="k")

    with pytest.raises(PmsError, match="no resource") as raised:
        pms.connector().execute(contact, lambda e: None)

    assert raised.value.retryable is False and pms.requests == []


class NotePost(Message):
    Note: str = Field(min_length=1, max_length=65535)


def test_an_applicant_with_notes_is_two_calls_the_note_a_child_job() -> None:
    profile = VENDORS.get("BUILDIUM").profile
    payload = {"first_name": "Grace", "last_name": "Hopper", "notes": "asked about parking"}
    pms = Buildium("applicants")
    connector = pms.connector()

    root = step("applicants", CREATE, payload)
    created = connector.execute(root, lambda e: None)
    children = children_after(profile, root, created.created_record_id)
    assert children == [
        ChildSpec(
            "applicant_notes", CREATE, None, {"note": "asked about parking", "applicant_id": "91"}
        )
    ]
    [child] = children
    pms.record = {"Id": 300, "Note": "asked about parking"}
    note = connector.execute(
        Step(child.model, child.action, None, child.payload, idempotency_key="k-2"), lambda e: None
    )

    applicant, note_request = pms.requests
    assert "Note" not in json.loads(applicant.content) and "notes" not in json.loads(
        applicant.content
    )
    ApplicantPost.model_validate_json(applicant.content)
    assert (note_request.method, note_request.url.path) == ("POST", "/v1/applicants/91/notes")
    assert_authenticated(note_request)
    NotePost.model_validate_json(note_request.content)
    assert note.created_record_id == "300"
    assert note.record == {"id": "300", "note": "asked about parking", "applicant_id": "91"}


def test_a_re_attempted_note_reads_back_under_its_applicant_and_is_found() -> None:
    pms = Buildium("applicants")
    pms.record = {"Id": 300, "Note": "asked about parking"}
    payload = {"note": "asked about parking", "applicant_id": "91"}
    accepted_at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    result = pms.connector().execute(
        Step("applicant_notes", CREATE, None, payload, "k-2", True, accepted_at), lambda e: None
    )

    [read] = pms.requests
    assert (read.method, read.url.path) == ("GET", "/v1/applicants/91/notes")
    assert result.created_record_id == "300"

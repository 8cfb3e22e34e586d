"""pmsq's unified models as Buildium's resources: one table of fields per model, read both ways.

Each `ModelMap` says where a unified model lives in Buildium's API (its collection path) and
how each unified field is spelled there: the Buildium field (a dotted path into nested objects
such as `Address.City`), the direction it travels (`WRITE` only into requests, `READ` only out
of answers, `BOTH`), and the transformation each way (a unified id is a string, Buildium's an
int32; a unified bedroom count is an int, Buildium's an enum name). `to_buildium` builds request
bodies from the table and `from_buildium` reads records back for the record cache and syncs, so
the two can never drift apart, and the vendor's profile (what the API accepts) is derived from
the same table.

Buildium's `PUT` replaces a record whole: a field left out is cleared. An update therefore
starts from the record as Buildium holds it (`carry`: the PUT message's fields copied from the
current record, reshaped where Buildium reads and writes them differently) and lays the
client's fields over it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Transform = Callable[[Any], Any]


class Direction(StrEnum):
    #: Sent in request bodies only (Buildium does not echo it in the same place).
    WRITE = "write"
    #: Read from Buildium's records only (Buildium computes it, or it is set elsewhere).
    READ = "read"
    #: Sent and read back at the same place.
    BOTH = "both"


def same(value: Any) -> Any:
    return value


def to_int(value: Any) -> int:
    """A unified id (a string) as Buildium's int32 id; a value that is no integer is sent as
    it is, so Buildium's own validation names the field."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value  # type: ignore[no-any-return]


def to_str(value: Any) -> str | None:
    return None if value is None else str(value)


def mobile_phone(value: Any) -> dict[str, Any]:
    """Buildium writes phones as `{Home, Work, Mobile, Fax}`: pmsq's one phone is the mobile."""
    return {"Mobile": value}


def first_cell_number(numbers: Any) -> str | None:
    """Buildium reads phones as `[{Number, Type}]`: the cell number, else the first one."""
    if not isinstance(numbers, list):
        return None
    usable = [n for n in numbers if isinstance(n, dict) and n.get("Number")]
    cell = next((n for n in usable if n.get("Type") == "Cell"), None)
    chosen = cell or (usable[0] if usable else None)
    return None if chosen is None else str(chosen["Number"])


#: How a read phone type is written back (PhoneNumberMessage.Type -> PhoneNumbersMessage key).
_PHONE_WRITE_KEYS = {"Home": "Home", "Office": "Work", "Cell": "Mobile", "Fax": "Fax"}


def phones_to_write(numbers: Any) -> dict[str, Any] | None:
    """A record's `[{Number, Type}]` as the `{Home, Work, Mobile, Fax}` a PUT takes."""
    if not isinstance(numbers, list):
        return None
    out: dict[str, Any] = {}
    for number in numbers:
        if isinstance(number, dict):
            key = _PHONE_WRITE_KEYS.get(str(number.get("Type")))
            if key is not None and number.get("Number"):
                out.setdefault(key, number["Number"])
    return out


def first_id(items: Any) -> str | None:
    """The id of the first object of a list (a tenant's leases, a lease's tenants)."""
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return to_str(items[0].get("Id"))
    return None


def id_list(value: Any) -> list[Any]:
    """One unified id as the list of int32 ids Buildium takes (`TenantIds`)."""
    return [to_int(value)]


#: Buildium's `UnitBedrooms` enum by bedroom count; 0 is a studio, 9 and more `NineBedPlus`.
BEDROOMS = {
    0: "Studio", 1: "OneBed", 2: "TwoBed", 3: "ThreeBed", 4: "FourBed", 5: "FiveBed",
    6: "SixBed", 7: "SevenBed", 8: "EightBed", 9: "NineBedPlus",
}  # fmt: skip
#: Buildium's `UnitBathrooms` enum by bathroom count (halves included).
BATHROOMS = {
    1: "OneBath", 1.5: "OnePointFiveBath", 2: "TwoBath", 2.5: "TwoPointFiveBath",
    3: "ThreeBath", 3.5: "ThreePointFiveBath", 4: "FourBath", 4.5: "FourPointFiveBath",
    5: "FiveBath", 5.5: "FivePlusBath",
}  # fmt: skip


def to_cents(value: Any) -> Any:
    """Buildium's amounts are dollars (a decimal); pmsq's unified money is integer cents."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * 100)
    return value


def to_dollars(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 100
    return value


def _number(value: Any) -> Any:
    """A unified count given as text ("2", "1.5", as Propexo types it) as a number."""
    if isinstance(value, str):
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            return value
    return value


def bedrooms_enum(value: Any) -> Any:
    value = _number(value)
    return BEDROOMS.get(min(int(value), 9), "NotSet") if isinstance(value, int) else value


def bedrooms_count(value: Any) -> int | None:
    return next((n for n, name in BEDROOMS.items() if name == value), None)


def bathrooms_enum(value: Any) -> Any:
    value = _number(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return BATHROOMS.get(min(round(value * 2) / 2, 5.5), "NotSet")
    return value


def bathrooms_count(value: Any) -> int | float | None:
    return next((n for n, name in BATHROOMS.items() if name == value), None)


@dataclass(frozen=True)
class FieldMap:
    """One unified field and where Buildium keeps it."""

    unified: str
    #: Dotted path in the Buildium message (`Address.City`).
    buildium: str
    direction: Direction = Direction.BOTH
    #: Unified value -> the value sent.
    write: Transform = same
    #: Buildium value -> the unified value.
    read: Transform = same
    #: Where an answer holds it, when not at `buildium` (phones are written one way, read
    #: another).
    read_from: str | None = None
    #: Sent on create only: Buildium's PUT message has no such field (a tenant's lease).
    create_only: bool = False

    @property
    def writable(self) -> bool:
        return self.direction is not Direction.READ

    @property
    def readable(self) -> bool:
        return self.direction is not Direction.WRITE


@dataclass(frozen=True)
class Carried:
    """A field of Buildium's PUT message copied from the current record (reshaped by
    `reshape` where the record holds it another way)."""

    buildium: str
    reshape: Transform = same


@dataclass(frozen=True)
class ModelMap:
    """A unified model as one Buildium resource."""

    #: The collection path; one record is `{path}/{id}`. `{name}` segments are filled from
    #: the unified body's `path_fields` (a note's applicant), which are not sent in the body.
    path: str
    fields: tuple[FieldMap, ...]
    #: Buildium fields a create needs that no unified field gives, with the value pmsq sends.
    create_defaults: Mapping[str, Any] = field(default_factory=dict)
    #: What an update keeps of the current record (Buildium's PUT replaces it whole).
    carry: tuple[Carried, ...] = ()
    #: Unified fields that name the parent in `path` instead of travelling in the body.
    path_fields: tuple[str, ...] = ()

    def collection(self, body: Mapping[str, Any]) -> str:
        """The collection path, its `{name}` segments filled from `body`."""
        values = {name: str(body.get(name) or "") for name in self.path_fields}
        return self.path.format(**values)

    def answers(self, url_path: str) -> bool:
        """Whether `url_path` is this resource's collection or one of its records."""
        return self._pattern().search(url_path) is not None

    def path_values(self, url_path: str) -> dict[str, str]:
        """The unified `path_fields` a URL of this resource names (a note's `applicant_id`):
        Buildium's records do not repeat them, so records read back get them from here."""
        found = self._pattern().search(url_path)
        return {k: v for k, v in found.groupdict().items() if v} if found else {}

    def _pattern(self) -> re.Pattern[str]:
        pattern = re.escape(self.path)
        for name in self.path_fields:
            pattern = pattern.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>[^/]+)")
        return re.compile(f"{pattern}(?:/[^/]+)?$")

    def writable_fields(self) -> frozenset[str]:
        """The unified fields a client may write: what the vendor profile accepts."""
        return frozenset(f.unified for f in self.fields if f.writable) | set(self.path_fields)

    def to_buildium(
        self, body: Mapping[str, Any], *, create: bool, current: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A Buildium request body from a unified one.

        On a create, `create_defaults` fill what the client did not give; on an update, the
        carried fields of `current` (the record as Buildium holds it) come first, so nothing
        the client did not mention is cleared. Unified fields without a writable mapping are
        not sent (the profile refuses them before they get here).
        """
        out: dict[str, Any] = {}
        if create:
            out.update(self.create_defaults)
        elif current is not None:
            for carried in self.carry:
                value = _get(current, carried.buildium)
                if value is not None:
                    _set(out, carried.buildium, carried.reshape(value))
        for spec in self.fields:
            if not spec.writable or spec.unified not in body or (spec.create_only and not create):
                continue
            value = body[spec.unified]
            _set(out, spec.buildium, None if value is None else spec.write(value))
        return out

    def from_buildium(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A unified record from a Buildium one: its id under `id` (a string), then every
        readable field Buildium gave a value."""
        out: dict[str, Any] = {"id": to_str(record.get("Id"))}
        for spec in self.fields:
            if not spec.readable:
                continue
            value = _get(record, spec.read_from or spec.buildium)
            converted = None if value is None else spec.read(value)
            if converted is not None:
                out[spec.unified] = converted
        return out

    def unified_name(self, buildium_field: str) -> str | None:
        """The unified field Buildium's field name (as its errors spell it) maps to."""
        wanted = buildium_field.lower()
        for spec in self.fields:
            if wanted in (spec.buildium.lower(), (spec.read_from or "").lower()):
                return spec.unified
        return None


def _get(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _set(out: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = out
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        node[last] = {**node[last], **value}
    else:
        node[last] = value


def _address(prefix: str = "Address") -> tuple[FieldMap, ...]:
    return (
        FieldMap("address_1", f"{prefix}.AddressLine1"),
        FieldMap("address_2", f"{prefix}.AddressLine2"),
        FieldMap("city", f"{prefix}.City"),
        FieldMap("state", f"{prefix}.State"),
        FieldMap("zip", f"{prefix}.PostalCode"),
        #: Buildium's country enum (`UnitedStates`, `Canada`, ...).
        FieldMap("country", f"{prefix}.Country"),
    )


_NAME_AND_EMAIL = (
    FieldMap("first_name", "FirstName"),
    FieldMap("last_name", "LastName"),
    FieldMap("email_1", "Email"),
)
_PHONE = FieldMap(
    "phone_1", "PhoneNumbers", write=mobile_phone, read=first_cell_number, read_from="PhoneNumbers"
)

#: Buildium's rental tenants (`/v1/leases/tenants`): a tenant is created on a lease.
RESIDENTS = ModelMap(
    path="/v1/leases/tenants",
    fields=(
        *_NAME_AND_EMAIL,
        _PHONE,
        FieldMap("notes", "Comment"),
        FieldMap("date_of_birth", "DateOfBirth"),
        FieldMap(
            "lease_id", "LeaseId", write=to_int, read=first_id, read_from="Leases", create_only=True
        ),
        *_address(),
    ),
    create_defaults={"Address": {"Country": "UnitedStates"}},
    carry=(
        Carried("FirstName"),
        Carried("LastName"),
        Carried("Email"),
        Carried("AlternateEmail"),
        Carried("PhoneNumbers", phones_to_write),
        Carried("DateOfBirth"),
        Carried("Comment"),
        Carried("TaxId"),
        Carried("Address"),
        Carried("AlternateAddress"),
        Carried("MailingPreference"),
    ),
)

#: Buildium's applicants (`/v1/applicants`).
APPLICANTS = ModelMap(
    path="/v1/applicants",
    fields=(
        *_NAME_AND_EMAIL,
        _PHONE,
        FieldMap("unit_id", "UnitId", write=to_int, read=to_str),
        FieldMap("property_id", "PropertyId", Direction.READ, read=to_str),
        FieldMap("status", "Status", Direction.READ),
    ),
    create_defaults={"SendRentalApplicationEmail": False},
    carry=(
        Carried("UnitId"),
        Carried("FirstName"),
        Carried("LastName"),
        Carried("Email"),
        Carried("PhoneNumbers", phones_to_write),
    ),
)

#: Buildium's leases (`/v1/leases`). Rent is its own resource there (a charge on a GL
#: account), so a lease's `rent_amount_in_cents` is read, not written.
LEASES = ModelMap(
    path="/v1/leases",
    fields=(
        FieldMap("unit_id", "UnitId", write=to_int, read=to_str),
        FieldMap(
            "resident_id",
            "TenantIds",
            write=id_list,
            read=first_id,
            read_from="CurrentTenants",
            create_only=True,
        ),
        FieldMap("start_date", "LeaseFromDate"),
        FieldMap("end_date", "LeaseToDate"),
        #: `Fixed`, `FixedWithRollover` or `AtWill`.
        FieldMap("lease_type", "LeaseType"),
        FieldMap("rent_amount_in_cents", "AccountDetails.Rent", Direction.READ, read=to_cents),
        FieldMap("property_id", "PropertyId", Direction.READ, read=to_str),
        FieldMap("status", "LeaseStatus", Direction.READ),
    ),
    create_defaults={"LeaseType": "Fixed", "SendWelcomeEmail": False},
    carry=(
        Carried("LeaseType"),
        Carried("UnitId"),
        Carried("LeaseFromDate"),
        Carried("LeaseToDate"),
        Carried("IsEvictionPending"),
        Carried("AutomaticallyMoveOutTenants"),
    ),
)

#: Buildium's rental units (`/v1/rentals/units`).
UNITS = ModelMap(
    path="/v1/rentals/units",
    fields=(
        FieldMap("name", "UnitNumber"),
        FieldMap("property_id", "PropertyId", write=to_int, read=to_str, create_only=True),
        FieldMap("bedrooms", "UnitBedrooms", write=bedrooms_enum, read=bedrooms_count),
        FieldMap("bathrooms", "UnitBathrooms", write=bathrooms_enum, read=bathrooms_count),
        FieldMap("rent_amount_market_in_cents", "MarketRent", write=to_dollars, read=to_cents),
        FieldMap("description", "Description"),
        *_address(),
    ),
    create_defaults={"Address": {"Country": "UnitedStates"}},
    carry=(
        Carried("UnitNumber"),
        Carried("UnitSize"),
        Carried("MarketRent"),
        Carried("Address"),
        Carried("UnitBedrooms"),
        Carried("UnitBathrooms"),
        Carried("Description"),
    ),
)

#: Notes on an applicant (`/v1/applicants/{applicantId}/notes`): Buildium's applicant message
#: has no notes, so an applicant's `notes` follow its create in a call of their own.
APPLICANT_NOTES = ModelMap(
    path="/v1/applicants/{applicant_id}/notes",
    fields=(FieldMap("note", "Note"),),
    path_fields=("applicant_id",),
)

#: Every unified model Buildium takes, by its pmsq name.
MODELS: Mapping[str, ModelMap] = {
    "residents": RESIDENTS,
    "applicants": APPLICANTS,
    "applicant_notes": APPLICANT_NOTES,
    "leases": LEASES,
    "units": UNITS,
}

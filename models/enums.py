"""String enums shared by the ORM, the API and the workers."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where one job stands; `pmsq.workers.transitions` owns the moves between them."""

    #: Stored, waiting for admission (new, or a retry waiting for its due time).
    PENDING = "PENDING"
    #: Admitted and published to the broker.
    QUEUED = "QUEUED"
    #: Claimed by a worker, which holds a lease on it.
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


#: Statuses a job never leaves.
TERMINAL_STATUSES = frozenset({JobStatus.SUCCESS, JobStatus.FAILURE})


class WriteStatus(StrEnum):
    """A write's status as the client sees it: the aggregate of its whole job tree."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"


class Cadence(StrEnum):
    """Time unit of sync and request-rate settings."""

    SECOND = "SECOND"
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


#: Nominal length of each cadence unit in seconds; MONTH is 30 days where a fixed length is
#: needed (rates). Sync scheduling uses calendar months.
CADENCE_SECONDS: dict[Cadence, int] = {
    Cadence.SECOND: 1,
    Cadence.MINUTE: 60,
    Cadence.HOUR: 3600,
    Cadence.DAY: 86_400,
    Cadence.WEEK: 7 * 86_400,
    Cadence.MONTH: 30 * 86_400,
}


class Vendor(StrEnum):
    """Property Management Systems pmsq can write to."""

    SANDBOX = "SANDBOX"
    APPFOLIO = "APPFOLIO"
    BUILDIUM = "BUILDIUM"
    RENT_MANAGER = "RENT_MANAGER"
    YARDI = "YARDI"
    ENTRATA = "ENTRATA"
    RESMAN = "RESMAN"
    REALPAGE = "REALPAGE"


#: How Propexo spells a vendor on the wire where pmsq's own name differs. The API answers
#: with Propexo's spelling and takes either.
PROPEXO_VENDOR_NAMES: dict[Vendor, str] = {Vendor.RENT_MANAGER: "RENTMANAGER"}
_VENDOR_BY_WIRE_NAME = {name: vendor for vendor, name in PROPEXO_VENDOR_NAMES.items()}


def vendor_on_wire(vendor: str) -> str:
    """`vendor` (pmsq's name) as the API spells it."""
    try:
        return PROPEXO_VENDOR_NAMES.get(Vendor(vendor), vendor)
    except ValueError:
        return vendor


def vendor_from_wire(name: object) -> object:
    """A vendor name from a request, Propexo's spelling or pmsq's, as pmsq's name; anything
    else is passed on unchanged for the enum to refuse."""
    if isinstance(name, str):
        return _VENDOR_BY_WIRE_NAME.get(name.upper(), name)
    return name


#: Every vendor name the API answers with.
WIRE_VENDOR_NAMES = tuple(vendor_on_wire(v.value) for v in Vendor)


class System(StrEnum):
    """Whether an integration talks to the PMS's production or its sandbox (Propexo's field)."""

    PRODUCTION = "PRODUCTION"
    SANDBOX = "SANDBOX"

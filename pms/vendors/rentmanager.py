"""Rent Manager: no `notes` on residents, no unit creation, and applicants created as a
workflow: validate at the PMS, then create, then attach contacts.

Speaks the sandbox's dialect for now (`pmsq.pms.dialect.SandboxDialect`), so the sandbox can
stand in for it; a wire dialect of its own goes here, named in `VENDOR`.
"""

from __future__ import annotations

from pmsq.models.enums import Vendor
from pmsq.pms.dialect import ApiKeyCredentials, SandboxDialect
from pmsq.pms.profiles import (
    BOTH,
    CONTACT_FIELDS,
    CONTACTS,
    LEASE_FIELDS,
    PERSON_FIELDS,
    UNIT_FIELDS,
    UPDATE,
    VALIDATE_THEN_CREATE,
    ModelSupport,
    VendorProfile,
)
from pmsq.pms.vendor import VendorSpec


class RentManagerCredentials(ApiKeyCredentials):
    """What a Rent Manager integration's credentials hold: the key the generic dialect sends."""


PROFILE = VendorProfile(
    Vendor.RENT_MANAGER.value,
    {
        "residents": ModelSupport(BOTH, PERSON_FIELDS),
        "applicants": ModelSupport(BOTH, PERSON_FIELDS, CONTACTS, create_step=VALIDATE_THEN_CREATE),
        "contacts": ModelSupport(BOTH, CONTACT_FIELDS),
        "leases": ModelSupport(BOTH, LEASE_FIELDS),
        "units": ModelSupport(frozenset({UPDATE}), UNIT_FIELDS),
    },
)

VENDOR = VendorSpec(PROFILE, RentManagerCredentials, SandboxDialect)

"""The sandbox PMS (`pmsq sandbox`): every model, every action, idempotency keys.

Speaks `pmsq.pms.dialect.SandboxDialect`, which the sandbox implements: the sandbox stands in
for every vendor in demos and tests because every vendor speaks it too, for now.
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
    ModelSupport,
    VendorProfile,
)
from pmsq.pms.vendor import VendorSpec


class SandboxCredentials(ApiKeyCredentials):
    """What a sandbox integration's credentials hold: the key the generic dialect sends."""


PROFILE = VendorProfile(
    Vendor.SANDBOX.value,
    {
        "residents": ModelSupport(BOTH, PERSON_FIELDS | {"notes"}),
        "applicants": ModelSupport(BOTH, PERSON_FIELDS | {"notes"}, CONTACTS),
        "contacts": ModelSupport(BOTH, CONTACT_FIELDS),
        "leases": ModelSupport(BOTH, LEASE_FIELDS),
        "units": ModelSupport(BOTH, UNIT_FIELDS),
    },
)

VENDOR = VendorSpec(PROFILE, SandboxCredentials, SandboxDialect)

"""Buildium: `notes` on residents and units of its own; fixed API hosts, so an integration
needs no base_url.

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
    ModelSupport,
    VendorProfile,
)
from pmsq.pms.vendor import VendorSpec


class BuildiumCredentials(ApiKeyCredentials):
    """What a Buildium integration's credentials hold: the key the generic dialect sends."""


PROFILE = VendorProfile(
    Vendor.BUILDIUM.value,
    {
        "residents": ModelSupport(BOTH, PERSON_FIELDS | {"notes"}),
        "applicants": ModelSupport(BOTH, PERSON_FIELDS | {"notes"}, CONTACTS),
        "contacts": ModelSupport(BOTH, CONTACT_FIELDS),
        "leases": ModelSupport(BOTH, LEASE_FIELDS),
        "units": ModelSupport(BOTH, UNIT_FIELDS),
    },
    api_hosts=("api.buildium.com", "apisandbox.buildium.com"),
)

VENDOR = VendorSpec(PROFILE, BuildiumCredentials, SandboxDialect)

"""Entrata: no units; contacts are created only and leases updated only.

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
    CREATE,
    LEASE_FIELDS,
    PERSON_FIELDS,
    UPDATE,
    ModelSupport,
    VendorProfile,
)
from pmsq.pms.vendor import VendorSpec


class EntrataCredentials(ApiKeyCredentials):
    """What an Entrata integration's credentials hold: the key the generic dialect sends."""


PROFILE = VendorProfile(
    Vendor.ENTRATA.value,
    {
        "residents": ModelSupport(BOTH, PERSON_FIELDS | {"notes"}),
        "applicants": ModelSupport(BOTH, PERSON_FIELDS, CONTACTS),
        "contacts": ModelSupport(frozenset({CREATE}), CONTACT_FIELDS),
        "leases": ModelSupport(frozenset({UPDATE}), LEASE_FIELDS),
    },
)

VENDOR = VendorSpec(PROFILE, EntrataCredentials, SandboxDialect)

"""ResMan: neither idempotency keys nor a field for an external reference, so a re-attempt
reads back records created since the write was accepted.

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
    PERSON_FIELDS,
    ModelSupport,
    VendorProfile,
)
from pmsq.pms.vendor import VendorSpec


class ResManCredentials(ApiKeyCredentials):
    """What a ResMan integration's credentials hold: the key the generic dialect sends."""


PROFILE = VendorProfile(
    Vendor.RESMAN.value,
    {
        "residents": ModelSupport(BOTH, PERSON_FIELDS),
        "applicants": ModelSupport(frozenset({CREATE}), PERSON_FIELDS, CONTACTS),
        "contacts": ModelSupport(frozenset({CREATE}), CONTACT_FIELDS),
    },
    supports_idempotency_key=False,
)

VENDOR = VendorSpec(PROFILE, ResManCredentials, SandboxDialect)

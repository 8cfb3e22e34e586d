"""AppFolio: no idempotency keys (a re-attempt reads back by the `external_id` each create
carries), and leases and units are updated only.

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
    UNIT_FIELDS,
    UPDATE,
    ModelSupport,
    VendorProfile,
)
from pmsq.pms.vendor import VendorSpec


class AppFolioCredentials(ApiKeyCredentials):
    """What an AppFolio integration's credentials hold: the key the generic dialect sends."""


PROFILE = VendorProfile(
    Vendor.APPFOLIO.value,
    {
        "residents": ModelSupport(BOTH, PERSON_FIELDS | {"notes"}),
        "applicants": ModelSupport(frozenset({CREATE}), PERSON_FIELDS, CONTACTS),
        "contacts": ModelSupport(frozenset({CREATE}), CONTACT_FIELDS),
        "leases": ModelSupport(frozenset({UPDATE}), LEASE_FIELDS),
        "units": ModelSupport(frozenset({UPDATE}), UNIT_FIELDS),
    },
    supports_idempotency_key=False,
    reference_field="external_id",
)

VENDOR = VendorSpec(PROFILE, AppFolioCredentials, SandboxDialect)

"""Yardi: residents are updated only; applicants are created as a workflow (validate first).

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
    VALIDATE_THEN_CREATE,
    ModelSupport,
    VendorProfile,
)
from pmsq.pms.vendor import VendorSpec


class YardiCredentials(ApiKeyCredentials):
    """What a Yardi integration's credentials hold: the key the generic dialect sends."""


PROFILE = VendorProfile(
    Vendor.YARDI.value,
    {
        "residents": ModelSupport(frozenset({UPDATE}), PERSON_FIELDS),
        "applicants": ModelSupport(
            frozenset({CREATE}), PERSON_FIELDS, CONTACTS, create_step=VALIDATE_THEN_CREATE
        ),
        "contacts": ModelSupport(frozenset({CREATE}), CONTACT_FIELDS),
        "leases": ModelSupport(BOTH, LEASE_FIELDS),
    },
)

VENDOR = VendorSpec(PROFILE, YardiCredentials, SandboxDialect)

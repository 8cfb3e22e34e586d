"""Buildium: its published Open API (`dialect`), the unified models mapped onto its resources
(`mapping`), fixed API hosts (an integration needs no base_url), and no idempotency keys.

The profile is derived from the mapping, so what the API accepts for Buildium is exactly what
the dialect can send: residents are Buildium's rental tenants (created on a lease, so
`lease_id`), applicants (their `notes` a second call, in a child job: the dialect knows
`applicant_notes`, but clients write them only with their applicant, and syncs do not read
them), leases and rental units. Buildium has nothing like pmsq's applicant contacts, so it
takes none.
"""

from __future__ import annotations

from pmsq.models.enums import Vendor
from pmsq.pms.profiles import BOTH, FollowUp, ModelSupport, VendorProfile
from pmsq.pms.vendor import VendorSpec
from pmsq.pms.vendors.buildium.dialect import BuildiumCredentials, BuildiumDialect
from pmsq.pms.vendors.buildium.mapping import MODELS

#: Requests per second Buildium allows one account (its developer guide's rate limit); the
#: `max_request_frequency` a Buildium integration should be given with a SECOND cadence.
RATE_LIMIT_PER_S = 10

#: An applicant's notes go to `/v1/applicants/{id}/notes` once it exists, as a child job.
NOTES = {"notes": FollowUp(model="applicant_notes", link_field="applicant_id", value_field="note")}

PROFILE = VendorProfile(
    Vendor.BUILDIUM.value,
    {
        "residents": ModelSupport(BOTH, MODELS["residents"].writable_fields()),
        "applicants": ModelSupport(BOTH, MODELS["applicants"].writable_fields(), follow_ups=NOTES),
        "leases": ModelSupport(BOTH, MODELS["leases"].writable_fields()),
        "units": ModelSupport(BOTH, MODELS["units"].writable_fields()),
    },
    supports_idempotency_key=False,
    api_hosts=("api.buildium.com", "apisandbox.buildium.com"),
)

VENDOR = VendorSpec(PROFILE, BuildiumCredentials, BuildiumDialect)

__all__ = ["PROFILE", "RATE_LIMIT_PER_S", "VENDOR", "BuildiumCredentials", "BuildiumDialect"]

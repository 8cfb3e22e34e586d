"""Parsing of PMS paths, shared by routes and recorder: the generic dialect's
`/t/{tenant}/{model}[/{id}]` and Buildium's `/t/{tenant}/v1/{resource}[/{id}]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Prefix of every path that belongs to the simulated PMS (and is therefore recorded).
PMS_PREFIX = "/t/"
#: A tenant is the last segment of an integration's base_url.
TENANT_PATTERN = r"^[A-Za-z0-9_.-]+$"
#: Models are lowercase names: residents, applicants, leases, contacts, units, ...
MODEL_PATTERN = r"^[a-z][a-z0-9_-]*$"

_MODEL_RE = re.compile(MODEL_PATTERN)
#: First segment of a Buildium path after the tenant.
BUILDIUM_PREFIX = "v1"
#: Buildium's resources (their path after `/v1/`) and the sandbox model that stores each.
#: A Buildium path naming an applicant's notes, after `/v1/`.
BUILDIUM_APPLICANT_NOTES = re.compile(r"^applicants/[^/]+/notes(/|$)")
BUILDIUM_RESOURCES = {
    "leases/tenants": "residents",
    "applicants": "applicants",
    "leases": "leases",
    "rentals/units": "units",
}


@dataclass(frozen=True)
class PmsPath:
    """What a `/t/` path names; `model` is None when the path is too short or malformed."""

    tenant: str
    model: str | None


def parse_pms_path(path: str) -> PmsPath | None:
    """Split a `/t/` path into tenant and model; None when it is not a PMS path at all.

    The recorder calls this before routing, so it accepts anything (even paths no route matches,
    with a malformed tenant kept verbatim) and never raises: every `/t/` request is recorded.
    """
    if not path.startswith(PMS_PREFIX):
        return None
    segments = path[len(PMS_PREFIX) :].split("/")
    tenant = segments[0]
    if len(segments) > 1 and segments[1] == BUILDIUM_PREFIX:
        return PmsPath(tenant=tenant, model=buildium_model("/".join(segments[2:])))
    model = segments[1] if len(segments) > 1 and _MODEL_RE.match(segments[1]) else None
    return PmsPath(tenant=tenant, model=model)


def buildium_model(resource_path: str) -> str | None:
    """The model a Buildium path after `/v1/` names (`leases/tenants/7` -> residents): the
    longest resource it starts with; an applicant's notes are `applicant_notes`."""
    if BUILDIUM_APPLICANT_NOTES.match(resource_path):
        return "applicant_notes"
    found = [r for r in BUILDIUM_RESOURCES if f"{resource_path}/".startswith(f"{r}/")]
    return BUILDIUM_RESOURCES[max(found, key=len)] if found else None

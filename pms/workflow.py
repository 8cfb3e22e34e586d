"""How a client write unfolds into job steps: the first step, its request body, its children.

Vendor-neutral: the shape comes from the vendor profile, so every connector shares it.
"""

from __future__ import annotations

from typing import Any

from pmsq.pms.connector import ChildSpec, Step
from pmsq.pms.profiles import CREATE, VALIDATE_THEN_CREATE, VendorProfile


def first_step_action(profile: VendorProfile, model: str, client_action: str) -> str:
    """The action the root job runs for a client's CREATE or UPDATE."""
    if client_action == CREATE:
        return profile.support(model, CREATE).create_step
    return client_action


def request_body(profile: VendorProfile, step: Step) -> dict[str, Any]:
    """The step's payload without nested lists and follow-ups, which become child jobs instead.

    A CREATE for a vendor with a `reference_field` also carries the step's idempotency key
    there (every attempt, the first included), so a re-attempt can find exactly this write's
    record at the PMS. Clients cannot set that field: it is no model's writable field.
    """
    support = profile.models.get(step.model)
    later = {*support.nested, *support.follow_ups} if support else set()
    body = {k: v for k, v in step.payload.items() if k not in later}
    if step.action == CREATE and profile.reference_field is not None:
        body[profile.reference_field] = step.idempotency_key
    return body


def children_after(
    profile: VendorProfile, step: Step, created_record_id: str | None
) -> list[ChildSpec]:
    """Child jobs a successful step spawns."""
    if step.action == VALIDATE_THEN_CREATE:
        return [ChildSpec(step.model, CREATE, None, dict(step.payload))]
    support = profile.models.get(step.model)
    if step.action != CREATE or support is None or created_record_id is None:
        return []
    children: list[ChildSpec] = []
    for field_name, nested in support.nested.items():
        for item in step.payload.get(field_name) or []:
            body = {**item, nested.link_field: created_record_id}
            children.append(ChildSpec(nested.model, CREATE, None, body))
    for field_name, follow_up in support.follow_ups.items():
        value = step.payload.get(field_name)
        if value is not None:
            body = {follow_up.value_field: value, follow_up.link_field: created_record_id}
            children.append(ChildSpec(follow_up.model, CREATE, None, body))
    return children

"""The sandbox PMS's validation rules; each failure is a `PayloadRejected` naming the field.

Only the first broken rule is reported, like most PMS APIs do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pmsq.pms.sandbox.errors import PayloadRejected

JsonObject = dict[str, Any]

#: Models whose records need a last name on creation.
MODELS_REQUIRING_LAST_NAME = frozenset({"residents", "applicants"})
#: Characters a phone number may contain besides digits.
_PHONE_DECORATION = re.compile(r"[+\-() ]")
_DIGITS = re.compile(r"^[0-9]+$")


def parse_body(raw: bytes) -> JsonObject:
    """Decode a request body; raises `PayloadRejected` unless it is a JSON object."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise PayloadRejected("request body must be a JSON object")
    return body


def check_fields(fields: JsonObject) -> None:
    """Rules for any write: each `email_N` contains "@", each `phone_N` is digits once
    decoration is removed. A null value means "no value" and passes."""
    for name in ("email_1", "email_2"):
        email = fields.get(name)
        if email is not None and not (isinstance(email, str) and "@" in email):
            raise PayloadRejected(f"{name} '{email}' is not a valid email address")
    for name in ("phone_1", "phone_2"):
        phone = fields.get(name)
        if phone is not None and not (
            isinstance(phone, str) and _DIGITS.match(_PHONE_DECORATION.sub("", phone))
        ):
            raise PayloadRejected(f"{name} '{phone}' is not a valid phone number")


def check_create(model: str, fields: JsonObject, applicant_exists: Callable[[str], bool]) -> None:
    """Rules for a POST (and for `/validate`): required fields, then `check_fields`, then refs.

    `applicant_exists` answers whether the tenant has that applicant id, so that contacts can
    only point at real applicants.
    """
    if model in MODELS_REQUIRING_LAST_NAME and _is_blank(fields.get("last_name")):
        raise PayloadRejected("last_name is required")
    check_fields(fields)
    if model == "contacts":
        applicant_id = fields.get("applicant_id")
        if _is_blank(applicant_id):
            raise PayloadRejected("applicant_id is required")
        if not applicant_exists(str(applicant_id)):
            raise PayloadRejected(f"applicant_id '{applicant_id}' does not exist")


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())

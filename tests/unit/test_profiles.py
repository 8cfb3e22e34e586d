"""Vendor capability profiles validate writes, and workflows unfold them into child steps."""

from __future__ import annotations

from typing import Any

import pytest

from pmsq.errors import NotFound, UnknownFields, UnsupportedOperation, ValidationFailed
from pmsq.models.enums import Vendor
from pmsq.pms.connector import ChildSpec, Step
from pmsq.pms.profiles import CREATE, FIELD_TYPES, UPDATE, VALIDATE_THEN_CREATE, VendorProfile
from pmsq.pms.registry import VENDORS, capabilities, profile_for
from pmsq.pms.workflow import children_after, first_step_action, request_body

BUILDIUM = profile_for("BUILDIUM")
#: Every model and field the generic dialect has, with applicant contacts as child jobs.
SANDBOX = profile_for("SANDBOX")
RENT_MANAGER = profile_for("RENT_MANAGER")
RESIDENT = {"first_name": "Ada", "last_name": "Lovelace", "email_1": "ada@example.com"}


def fields_named(error: ValidationFailed) -> list[str]:
    return [detail["field"] for detail in error.details]


# --- unknown fields ---------------------------------------------------------------------------


def test_buildium_accepts_notes_on_residents() -> None:
    payload = {**RESIDENT, "notes": "prefers email"}
    assert BUILDIUM.clean_payload("residents", CREATE, payload, ignore_unknown=False) == payload


def test_rent_manager_refuses_notes_on_residents_naming_the_field() -> None:
    with pytest.raises(UnknownFields) as raised:
        RENT_MANAGER.clean_payload(
            "residents", CREATE, {**RESIDENT, "notes": "x"}, ignore_unknown=False
        )
    assert fields_named(raised.value) == ["notes"]
    assert "notes" in raised.value.message
    assert raised.value.code == "unknown_fields"


def test_unknown_fields_names_every_unsupported_field() -> None:
    with pytest.raises(UnknownFields) as raised:
        RENT_MANAGER.clean_payload(
            "residents", UPDATE, {**RESIDENT, "notes": "x", "pets": "cat"}, ignore_unknown=False
        )
    assert fields_named(raised.value) == ["notes", "pets"]


def test_ignore_unknown_strips_unsupported_fields() -> None:
    cleaned = RENT_MANAGER.clean_payload(
        "residents", CREATE, {**RESIDENT, "notes": "x"}, ignore_unknown=True
    )
    assert cleaned == RESIDENT


def test_ignore_unknown_still_checks_the_types_of_what_remains() -> None:
    with pytest.raises(ValidationFailed) as raised:
        RENT_MANAGER.clean_payload(
            "units", UPDATE, {"bedrooms": "two", "notes": "x"}, ignore_unknown=True
        )
    assert fields_named(raised.value) == ["bedrooms"]


# --- unsupported operations ----------------------------------------------------------------


def test_rent_manager_refuses_creating_units() -> None:
    with pytest.raises(UnsupportedOperation) as raised:
        RENT_MANAGER.clean_payload("units", CREATE, {"name": "4B"}, ignore_unknown=False)
    assert fields_named(raised.value) == ["action"]
    assert "CREATE" in raised.value.message and "units" in raised.value.message
    # ... while it updates them.
    assert RENT_MANAGER.clean_payload("units", UPDATE, {"name": "4B"}, ignore_unknown=False) == {
        "name": "4B"
    }


def test_a_model_the_vendor_lacks_is_unsupported() -> None:
    with pytest.raises(UnsupportedOperation) as raised:
        profile_for("YARDI").clean_payload("units", UPDATE, {}, ignore_unknown=True)
    assert fields_named(raised.value) == ["model"]


def test_profile_for_an_unknown_vendor_is_not_found() -> None:
    with pytest.raises(NotFound):
        profile_for("NOT_A_PMS")


# --- wrong types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "payload", "bad_field"),
    [
        ("units", {"name": "4B", "bedrooms": "two"}, "bedrooms"),
        ("units", {"bedrooms": 2.5}, "bedrooms"),
        ("units", {"bathrooms": "1,5"}, "bathrooms"),
        ("units", {"bedrooms": True}, "bedrooms"),
        ("units", {"rent_amount_market_in_cents": "1200"}, "rent_amount_market_in_cents"),
        ("residents", {"first_name": 7}, "first_name"),
        ("applicants", {"first_name": "Ada", "contacts": "ada@example.com"}, "contacts"),
        ("applicants", {"contacts": [{"email_1": "a@example.com"}, "b"]}, "contacts"),
        ("applicants", {"contacts": [{"email_1": "a@example.com", "fax": "1"}]}, "contacts[0].fax"),
        ("applicants", {"contacts": [{}, {"email_1": 5}]}, "contacts[1].email_1"),
        # The link field is filled in by the workflow, never by the client.
        ("applicants", {"contacts": [{"applicant_id": "x"}]}, "contacts[0].applicant_id"),
    ],
)
def test_wrong_values_fail_validation_naming_the_field_path(
    model: str, payload: dict[str, Any], bad_field: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        SANDBOX.clean_payload(model, CREATE, payload, ignore_unknown=False)
    assert type(raised.value) is ValidationFailed
    assert fields_named(raised.value) == [bad_field]
    assert bad_field in raised.value.message


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ValidationFailed) as raised:
        SANDBOX.clean_payload(
            "units", CREATE, {"bedrooms": "two", "bathrooms": "one"}, ignore_unknown=False
        )
    assert sorted(fields_named(raised.value)) == ["bathrooms", "bedrooms"]


def test_well_typed_values_and_nulls_pass() -> None:
    payload = {
        "name": "4B",
        "bedrooms": "2",
        "bathrooms": 1.5,
        "rent_amount_market_in_cents": 1200,
        "property_id": None,
    }
    assert BUILDIUM.clean_payload("units", CREATE, payload, ignore_unknown=False) == payload


# --- capabilities agree with the profiles ---------------------------------------------------


def valid_value(profile: VendorProfile, model: str, field: str) -> Any:
    nested = profile.models[model].nested.get(field)
    if nested is not None:
        child_fields = sorted(profile.models[nested.model].fields - {nested.link_field})
        return [{name: valid_value(profile, nested.model, name) for name in child_fields}]
    return FIELD_TYPES.get(field, (str,))[0](1)


def listed_capabilities() -> list[tuple[str, str, str, list[str]]]:
    return [
        (vendor, model, action, entry["fields"])
        for vendor, caps in capabilities().items()
        for model, entry in caps["models"].items()
        for action in entry["actions"]
    ]


def test_capabilities_list_every_vendor_with_a_profile() -> None:
    caps = capabilities()
    assert set(caps) == set(VENDORS.names())
    assert {vendor.value for vendor in Vendor} <= set(caps)  # every built-in vendor has a profile
    assert caps[Vendor.APPFOLIO.value]["supports_idempotency_key"] is False
    assert caps[Vendor.SANDBOX.value]["supports_idempotency_key"] is True
    assert caps[Vendor.BUILDIUM.value]["supports_idempotency_key"] is False
    assert {name: caps[name]["wire_format"] for name in caps} == {
        name: "buildium" if name == Vendor.BUILDIUM.value else "generic" for name in caps
    }


@pytest.mark.parametrize(("vendor", "model", "action", "fields"), listed_capabilities())
def test_every_listed_field_is_accepted_by_clean_payload(
    vendor: str, model: str, action: str, fields: list[str]
) -> None:
    profile = profile_for(vendor)
    for field in fields:
        payload = {field: valid_value(profile, model, field)}
        assert profile.clean_payload(model, action, payload, ignore_unknown=False) == payload
    everything = {field: valid_value(profile, model, field) for field in fields}
    assert profile.clean_payload(model, action, everything, ignore_unknown=False) == everything


@pytest.mark.parametrize(("vendor", "model", "action", "fields"), listed_capabilities())
def test_a_field_not_listed_is_refused(
    vendor: str, model: str, action: str, fields: list[str]
) -> None:
    with pytest.raises(UnknownFields) as raised:
        profile_for(vendor).clean_payload(model, action, {"not_a_field": "x"}, ignore_unknown=False)
    assert fields_named(raised.value) == ["not_a_field"]
    assert "not_a_field" not in fields


def test_actions_not_listed_are_refused() -> None:
    caps = capabilities()
    checked = 0
    for vendor, vendor_caps in caps.items():
        for model, entry in vendor_caps["models"].items():
            for action in {CREATE, UPDATE} - set(entry["actions"]):
                with pytest.raises(UnsupportedOperation):
                    profile_for(vendor).clean_payload(model, action, {}, ignore_unknown=True)
                checked += 1
    assert checked > 0


# --- workflows -------------------------------------------------------------------------------


def test_rent_manager_creates_applicants_by_validating_first() -> None:
    assert first_step_action(RENT_MANAGER, "applicants", CREATE) == VALIDATE_THEN_CREATE
    assert first_step_action(BUILDIUM, "applicants", CREATE) == CREATE
    assert first_step_action(RENT_MANAGER, "applicants", UPDATE) == UPDATE
    assert first_step_action(RENT_MANAGER, "residents", CREATE) == CREATE


def test_first_step_of_an_unsupported_create_is_refused() -> None:
    with pytest.raises(UnsupportedOperation):
        first_step_action(RENT_MANAGER, "units", CREATE)


APPLICANT: dict[str, Any] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "contacts": [
        {"kind": "email", "email_1": "ada@example.com"},
        {"kind": "phone", "phone_1": "+1 555 0100"},
    ],
}


def step(action: str, payload: dict[str, Any], model: str = "applicants") -> Step:
    return Step(model, action, None, payload, idempotency_key="k-1")


def test_validate_step_spawns_the_create_with_the_full_payload() -> None:
    children = children_after(RENT_MANAGER, step(VALIDATE_THEN_CREATE, APPLICANT), None)
    assert children == [ChildSpec("applicants", CREATE, None, APPLICANT)]
    # The child's payload is a copy: changing it cannot alter the parent's.
    children[0].payload["first_name"] = "Grace"
    assert APPLICANT["first_name"] == "Ada"


def test_create_with_contacts_spawns_one_linked_contact_per_item() -> None:
    children = children_after(RENT_MANAGER, step(CREATE, APPLICANT), "app-42")
    assert children == [
        ChildSpec("contacts", CREATE, None, {**item, "applicant_id": "app-42"})
        for item in APPLICANT["contacts"]
    ]


@pytest.mark.parametrize(
    ("action", "created_id", "payload"),
    [
        (CREATE, None, APPLICANT),  # nothing was created to link to
        (UPDATE, "app-42", APPLICANT),
        (CREATE, "app-42", {"first_name": "Ada"}),
        (CREATE, "app-42", {"first_name": "Ada", "contacts": []}),
    ],
)
def test_no_children_without_a_created_record_or_nested_items(
    action: str, created_id: str | None, payload: dict[str, Any]
) -> None:
    assert children_after(RENT_MANAGER, step(action, payload), created_id) == []


def test_request_body_leaves_nested_lists_to_the_children() -> None:
    body = request_body(RENT_MANAGER, step(CREATE, APPLICANT))
    assert body == {"first_name": "Ada", "last_name": "Lovelace"}


def test_a_reference_field_is_written_by_pmsq_only() -> None:
    """A client able to set the reference could make two writes look like one at read-back."""
    for profile in (vendor.profile for vendor in VENDORS):
        if profile.reference_field is None:
            continue
        assert not profile.supports_idempotency_key, profile.vendor
        for name, support in profile.models.items():
            assert profile.reference_field not in support.writable_fields(), (profile.vendor, name)


def test_only_creates_of_a_vendor_with_a_reference_carry_it() -> None:
    appfolio = profile_for("APPFOLIO")
    create = step(CREATE, dict(RESIDENT), model="residents")
    update = Step("residents", UPDATE, "residents-1", dict(RESIDENT), idempotency_key="k-1")

    assert request_body(appfolio, create) == {**RESIDENT, "external_id": "k-1"}
    assert request_body(appfolio, update) == RESIDENT
    assert request_body(BUILDIUM, create) == RESIDENT

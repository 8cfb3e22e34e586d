"""The registry of vendors: the built-in ones and those packages add through an entry point.

A package adds a vendor by declaring, in its own pyproject.toml,

    [project.entry-points."pmsq.vendors"]
    ACME = "pmsq_acme:VENDOR"

where `VENDOR` is a `pmsq.pms.vendor.VendorSpec` whose name is the entry point's name
(docs/vendors.md). `VENDORS` is read once, when this module is first imported; a vendor that
cannot be loaded stops that import with an error naming its entry point, since integrations of
it could not run anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pmsq.errors import NotFound, PmsqError
from pmsq.pms.profiles import VendorProfile
from pmsq.pms.vendor import VendorSpec
from pmsq.pms.vendors import BUILTIN

#: The entry-point group third-party vendor packages register under.
ENTRY_POINT_GROUP = "pmsq.vendors"
#: A vendor's name, as `integration_vendor` stores it (a column of 40 characters).
VENDOR_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")


class Registry:
    """Vendors by name. Names are unique: a package cannot replace a built-in vendor."""

    def __init__(self, vendors: Iterable[VendorSpec[Any]]) -> None:
        self._vendors: dict[str, VendorSpec[Any]] = {}
        for vendor in vendors:
            if not VENDOR_NAME.match(vendor.name):
                raise PmsqError(
                    f"vendor name '{vendor.name}' is not upper-case letters, digits and "
                    "underscores (at most 40, a letter first)"
                )
            if vendor.name in self._vendors:
                raise PmsqError(f"vendor '{vendor.name}' is registered twice")
            self._vendors[vendor.name] = vendor

    @classmethod
    def discover(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        """The built-in vendors and every vendor installed under the entry-point `group`."""
        return cls([*BUILTIN, *(load_entry_point(ep) for ep in entry_points(group=group))])

    def get(self, name: str) -> VendorSpec[Any]:
        """The vendor called `name`; NotFound when none is registered."""
        vendor = self._vendors.get(name)
        if vendor is None:
            raise NotFound(f"no PMS profile for vendor '{name}'")
        return vendor

    def __contains__(self, name: object) -> bool:
        return name in self._vendors

    def __iter__(self) -> Iterator[VendorSpec[Any]]:
        return iter(self._vendors.values())

    def names(self) -> list[str]:
        """Registered names, in registration order (built-ins first)."""
        return list(self._vendors)

    def known_models(self) -> frozenset[str]:
        """Every model some vendor writes; a model outside it is unknown to pmsq altogether."""
        return frozenset(m for vendor in self for m in vendor.profile.models)

    def capabilities(self) -> dict[str, Any]:
        """Every vendor's models, actions and fields, as `GET /v1/admin/capabilities` shows
        them."""
        return {
            vendor.name: {"wire_format": vendor.wire_format, **_capabilities(vendor.profile)}
            for vendor in self
        }


def load_entry_point(entry_point: EntryPoint) -> VendorSpec[Any]:
    """The VendorSpec an entry point names; PmsqError naming the entry point otherwise."""
    where = f"entry point '{entry_point.name} = {entry_point.value}' of group {entry_point.group}"
    try:
        vendor = entry_point.load()
    except Exception as exc:
        raise PmsqError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not isinstance(vendor, VendorSpec):
        raise PmsqError(f"{where} is a {type(vendor).__name__}, not a VendorSpec")
    if vendor.name != entry_point.name:
        raise PmsqError(f"{where} names vendor '{vendor.name}': the two names must agree")
    return vendor


def _capabilities(profile: VendorProfile) -> dict[str, Any]:
    return {
        "supports_idempotency_key": profile.supports_idempotency_key,
        "reference_field": profile.reference_field,
        "models": {
            name: {"actions": sorted(support.actions), "fields": sorted(support.writable_fields())}
            for name, support in sorted(profile.models.items())
        },
    }


#: Every vendor of this installation.
VENDORS = Registry.discover()
#: Every model some installed vendor writes.
KNOWN_MODELS = VENDORS.known_models()


def profile_for(vendor: str) -> VendorProfile:
    """The vendor's profile; NotFound when pmsq has no connector for it."""
    return VENDORS.get(vendor).profile


def capabilities() -> dict[str, Any]:
    """Every installed vendor's models, actions and fields."""
    return VENDORS.capabilities()

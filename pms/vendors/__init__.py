"""The vendors pmsq ships with, one module each: its profile, credentials model and dialect.

`BUILTIN` is what the registry (`pmsq.pms.registry`) starts from; packages add more through
the `pmsq.vendors` entry point (docs/vendors.md).
"""

from __future__ import annotations

from typing import Any

from pmsq.pms.vendor import VendorSpec
from pmsq.pms.vendors import (
    appfolio,
    buildium,
    entrata,
    realpage,
    rentmanager,
    resman,
    sandbox,
    yardi,
)

BUILTIN: tuple[VendorSpec[Any], ...] = (
    sandbox.VENDOR,
    appfolio.VENDOR,
    buildium.VENDOR,
    rentmanager.VENDOR,
    yardi.VENDOR,
    entrata.VENDOR,
    resman.VENDOR,
    realpage.VENDOR,
)

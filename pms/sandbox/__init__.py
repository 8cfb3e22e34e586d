"""The sandbox PMS: an in-memory HTTP server that plays a Property Management System.

It is the judge of pmsq's flow-control and exactly-once claims: every request under `/t/` is
recorded with its wall-clock arrival and answer times and whether it changed the store, and
faults (error statuses, 429 with Retry-After, slow commits, answers lost after a write was
applied, dropped connections) can be injected per tenant.
"""

from __future__ import annotations

from pmsq.pms.sandbox.server import create_app, run

__all__ = ["create_app", "run"]

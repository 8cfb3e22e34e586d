"""`/_sandbox/...`: how tests and benchmarks steer the sandbox and read its verdicts.

These requests are not recorded and never hit faults: they are the judge's own channel.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from pmsq.pms.sandbox.buildium import Dialect
from pmsq.pms.sandbox.faults import FaultSpec
from pmsq.pms.sandbox.paths import TENANT_PATTERN
from pmsq.pms.sandbox.state import SandboxState


class LimitSpec(BaseModel):
    """Body of `POST /_sandbox/tenants/{tenant}/limits`; null stops advertising a limit."""

    model_config = ConfigDict(extra="forbid")

    requests_per_s: float | None = Field(default=None, gt=0)


class DialectSpec(BaseModel):
    """Body of `POST /_sandbox/tenants/{tenant}/dialect`: the wire the tenant speaks."""

    model_config = ConfigDict(extra="forbid")

    dialect: Dialect


def build_control_router(state: SandboxState) -> APIRouter:
    router = APIRouter(prefix="/_sandbox", tags=["sandbox"])

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    @router.post("/faults", status_code=201)
    async def add_fault(spec: FaultSpec) -> dict[str, Any]:
        return {"id": state.faults.add(spec).id}

    @router.get("/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": [rule.as_dict() for rule in state.faults.list()]}

    @router.delete("/faults")
    async def clear_faults(tenant: str | None = None) -> dict[str, Any]:
        return {"deleted": state.faults.clear(tenant)}

    @router.post("/tenants/{tenant}/limits")
    async def set_limits(
        tenant: Annotated[str, Path(pattern=TENANT_PATTERN)], spec: LimitSpec
    ) -> dict[str, Any]:
        state.limits.set(tenant, spec.requests_per_s)
        return {"tenant": tenant, "requests_per_s": spec.requests_per_s}

    @router.post("/tenants/{tenant}/dialect")
    async def set_dialect(
        tenant: Annotated[str, Path(pattern=TENANT_PATTERN)], spec: DialectSpec
    ) -> dict[str, Any]:
        state.dialects.set(tenant, spec.dialect)
        return {"tenant": tenant, "dialect": spec.dialect.value}

    @router.get("/requests")
    async def list_requests(
        tenant: str | None = None, since_seq: Annotated[int, Query(ge=0)] = 0
    ) -> dict[str, Any]:
        entries = state.recorder.entries(tenant=tenant, since_seq=since_seq)
        return {"requests": [entry.as_dict() for entry in entries]}

    @router.delete("/requests")
    async def clear_requests() -> dict[str, Any]:
        state.recorder.clear()
        return {"ok": True}

    @router.get("/records")
    async def list_records(tenant: str | None = None, model: str | None = None) -> dict[str, Any]:
        return {"records": state.store.dump(tenant=tenant, model=model)}

    @router.post("/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}

    return router

"""Everything one sandbox remembers, bundled so `create_app` can hand it to routes explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field

from pmsq.pms.sandbox.buildium import TenantDialects
from pmsq.pms.sandbox.faults import FaultBook
from pmsq.pms.sandbox.limits import TenantLimits
from pmsq.pms.sandbox.recorder import Recorder
from pmsq.pms.sandbox.store import IdempotencyMemory, Store


@dataclass
class SandboxState:
    store: Store = field(default_factory=Store)
    memory: IdempotencyMemory = field(default_factory=IdempotencyMemory)
    faults: FaultBook = field(default_factory=FaultBook)
    recorder: Recorder = field(default_factory=Recorder)
    limits: TenantLimits = field(default_factory=TenantLimits)
    #: Which tenants speak Buildium instead of the generic dialect.
    dialects: TenantDialects = field(default_factory=TenantDialects)

    def reset(self) -> None:
        """Back to a fresh sandbox: no records, keys, faults, limits, dialects or requests;
        seq restarts."""
        self.store.clear()
        self.memory.clear()
        self.faults.clear()
        self.recorder.reset()
        self.limits.clear()
        self.dialects.clear()

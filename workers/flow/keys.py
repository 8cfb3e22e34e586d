"""Every Redis key pmsq's flow control uses.

Keys of one integration share the hash tag `{integration_id}` so a Redis Cluster keeps them in
one slot and a Lua script may touch them together. Times stored in Redis are microseconds on
Redis's own clock (`TIME`), never a worker's, so hosts with skewed clocks agree.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "pmsq"

#: ZSET integration_id -> time (us) its next admission may happen. Global (its own slot).
#: Entries leave when their integration's backlog is empty; no expiry.
READY = f"{PREFIX}:ready"
#: SET of integration ids that ever had a backlog; the sweep walks it. No expiry.
KNOWN_INTEGRATIONS = f"{PREFIX}:integrations"


def claim_member(job_id: str, delivery: int) -> str:
    """The leases ZSET member of a job's claim by delivery number `delivery`."""
    return f"{job_id}:{delivery}"


@dataclass(frozen=True)
class IntegrationKeys:
    integration_id: str

    def _key(self, name: str) -> str:
        return f"{PREFIX}:{{{self.integration_id}}}:{name}"

    @property
    def backlog(self) -> str:
        """ZSET job_id -> due time (us). Jobs waiting for admission; popped by admit.lua."""
        return self._key("backlog")

    @property
    def leases(self) -> str:
        """ZSET member -> lease expiry (us): the integration's concurrency slots.

        A member is `job_id` from admission until a worker claims the job, then
        `claim_member(job_id, delivery)` for that claim (the fencing token): only the worker
        holding that member may send requests (pace.lua) or renew it (renew.lua). Expired
        members stop counting and are pruned; no key expiry."""
        return self._key("leases")

    @property
    def admit_tat(self) -> str:
        """STRING: GCRA theoretical arrival time (us) of admissions. Expires soon after it."""
        return self._key("admit_tat")

    @property
    def request_tat(self) -> str:
        """STRING: the next free PMS request slot (us). Expires soon after it."""
        return self._key("request_tat")

    @property
    def wake_at(self) -> str:
        """STRING: the earliest ready-set time (us) an admission told its caller to write
        since a dispatcher's last claimed admission, so later admissions that need no earlier
        one skip the write (admit.lua). Expires a second after that time."""
        return self._key("wake_at")

    @property
    def paused_until(self) -> str:
        """STRING: time (us) until which the PMS asked us to stop (429). Expires then."""
        return self._key("paused_until")

    @property
    def limits(self) -> str:
        """HASH version_us, interval_us, tolerance_us, concurrency. Written on every
        limits change unless a newer version is there (version_us: the integration's
        updated_at); no expiry; rebuilt from the database if missing or older."""
        return self._key("limits")

    @property
    def pms_limits(self) -> str:
        """HASH of the rate-limit headers the PMS last sent (limit, remaining, seen_at)."""
        return self._key("pms_limits")

    def write_trace(self, root_job_id: str) -> str:
        """STRING: JSON of the W3C trace headers of the write `root_job_id`'s first admission,
        so its jobs admitted later (retries, a waiting backlog) join its trace. Written only
        while tracing is on; expires `WRITE_TRACE_TTL_S` after it was set."""
        return self._key(f"trace:{root_job_id}")


#: How long a write's trace context is kept for its later jobs; after that they start their own.
WRITE_TRACE_TTL_S = 86_400

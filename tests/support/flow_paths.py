"""Every path of flow control that runs a Lua script, called once each: a Redis that answers
them all (a new Sentinel master, a cluster) runs pmsq."""

from __future__ import annotations

import redis

from pmsq.models.enums import Cadence
from pmsq.scheduler.leader import LeaderLease
from pmsq.workers.flow.backend import Pace
from pmsq.workers.flow.limits import Limits
from pmsq.workers.flow.redis_backend import RedisFlowControl

LIMITS = Limits.from_values(1000, Cadence.SECOND, 2, margin_ms=0)


def every_script_runs(client: redis.Redis, integration_id: str) -> None:
    """Calls each script-backed path of flow control and beat's leader lease once."""
    flow = RedisFlowControl(client)
    flow.set_limits(integration_id, LIMITS)
    flow.enqueue(integration_id, ["late"], delay_s=60)  # pipelined EVALSHA, with delay
    flow.enqueue_many({integration_id: ["j1", "j2"]})  # pipelined EVALSHA
    due = flow.claim_due(10, claim_s=5)
    assert integration_id in due.integration_ids
    admitted = flow.admit(integration_id, max_jobs=2, lease_s=5)
    assert admitted.status == "ok" and set(admitted.job_ids) == {"j1", "j2"}
    flow.reschedule(integration_id, due.claim_us, admitted.next_us)
    assert flow.hold(integration_id, "j1", 1, lease_s=5).held
    assert flow.renew(integration_id, "j1", 1, lease_s=5).held
    paced = flow.pace(integration_id, "j1", 1)
    assert paced.decision is Pace.GO and paced.slot is not None
    assert flow.give_back(integration_id, paced.slot)
    assert not flow.reclaim(integration_id, "j1", 1)  # its lease is live
    assert flow.release(integration_id, "j1:1") == 1  # "late" is left
    assert not flow.enqueue_orphan(integration_id, "j2")  # admitted, lease live
    # Admitted now or (spaced by the limits) later: the claim takes a free slot either way.
    assert flow.submit(integration_id, ["j3"], max_jobs=1, lease_s=5).status == "ok"
    assert flow.hold(integration_id, "j3", 1, lease_s=5).held
    finished = flow.finish(
        integration_id, "j3:1", 1, lease_s=5, pms_headers={"x-ratelimit-remaining": "1"}
    )
    assert finished.status == "ok" and "late" not in finished.job_ids  # not due yet
    assert flow.pause(integration_id, 0.01) > 0
    lease = LeaderLease(client, "beat-a", ttl_s=5)
    assert lease.hold()
    lease.release()

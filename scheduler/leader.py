"""A short leader lease in Redis, so of several beat processes one fires at a time.

The lease is renewed on every tick and lapses within `ttl_s` of the leader's death, so another
beat takes over in seconds. It is an efficiency measure, not the safety net: two beats that
briefly both believe they lead still cannot start a sync twice, because the database keeps the
fire key (schedule, scheduled time) unique.
"""

from __future__ import annotations

from typing import Any

import redis

#: Redis key of the beat leader's lease (STRING: the leader's id; expires after the TTL).
LEADER_KEY = "pmsq:beat:leader"

# KEYS[1] lease key; ARGV[1] holder id; ARGV[2] ttl (ms).
# Returns 1 when the caller holds the lease afterwards (taken or renewed), else 0.
_HOLD = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# KEYS[1] lease key; ARGV[1] holder id. Deletes the lease only if the caller holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLease:
    def __init__(self, client: redis.Redis, holder_id: str, ttl_s: float) -> None:
        self._holder_id = holder_id
        self._ttl_ms = int(ttl_s * 1000)
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take or renew the lease; True while this process leads."""
        return bool(self._hold(keys=[LEADER_KEY], args=[self._holder_id, self._ttl_ms]))

    def queue_hold(self, pipe: Any) -> None:
        """Queue `hold` on a non-transactional pipeline, so the lease rides in a round trip the
        caller makes anyway; read its answer with `held`. (EVALSHA through `execute_command`:
        a Redis Cluster pipeline refuses `evalsha` but routes the command by its key.)"""
        pipe.execute_command(
            "EVALSHA", self._hold.sha, 1, LEADER_KEY, self._holder_id, self._ttl_ms
        )

    def held(self, answer: Any) -> bool:
        """The queued `hold`'s answer from the pipeline's results (executed with
        `raise_on_error=False`); runs `hold` alone if Redis had not loaded the script yet."""
        if isinstance(answer, redis.exceptions.NoScriptError):
            return self.hold()
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    def release(self) -> None:
        self._release(keys=[LEADER_KEY], args=[self._holder_id])

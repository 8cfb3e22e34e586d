-- release.lua: give back a lease its owner holds.
--
-- KEYS[1] leases   ZSET member -> lease expiry (us)
-- KEYS[2] backlog  ZSET job_id -> due time (us)
-- ARGV[1] the owner's member: "job_id:delivery" for a claim, "job_id" for an admission
--
-- Returns the backlog's size, so the caller knows whether to admit the next job. Only the
-- named member goes: a stale worker releasing its claim never frees the newer delivery's.
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[2])

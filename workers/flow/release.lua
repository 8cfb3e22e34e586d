-- release.lua: give back a finished job's concurrency lease.
--
-- KEYS[1] leases   ZSET job_id -> lease expiry (us)
-- KEYS[2] backlog  ZSET job_id -> due time (us)
-- ARGV[1] job id
--
-- Returns the backlog's size, so the caller knows whether to admit the next job.
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[2])

-- extend.lua: extend a running job's concurrency lease.
--
-- KEYS[1] leases  ZSET job_id -> lease expiry (us)
-- ARGV[1] job id
-- ARGV[2] lease length (us) from now
--
-- Returns 1 if the lease was extended, 0 if it had already expired and been pruned (the
-- slot may have been given to another job; the caller logs it).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%d', now + tonumber(ARGV[2])), ARGV[1])

-- hold.lua: make sure a claimed job holds a concurrency lease, extending it.
--
-- KEYS[1] leases  ZSET job_id -> lease expiry (us)
-- KEYS[2] limits  HASH concurrency
-- ARGV[1] job id
-- ARGV[2] lease length (us) from now
--
-- Returns 1 when the job holds a lease afterwards: its own, extended, or a free slot taken
-- again (its lease had lapsed, e.g. while its message waited in the broker). Returns 0 when
-- its lease lapsed and every slot is taken: the job must not run now.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local expiry = string.format('%d', now + tonumber(ARGV[2]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  return 1
end
local concurrency = tonumber(redis.call('HGET', KEYS[2], 'concurrency') or '1')
if redis.call('ZCARD', KEYS[1]) < concurrency then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  return 1
end
return 0

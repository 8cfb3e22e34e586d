-- enqueue_orphan.lua: put a PENDING job found missing from Redis back in its backlog.
--
-- KEYS[1] backlog  ZSET job_id -> due time (us)
-- KEYS[2] leases   ZSET member -> lease expiry (us)
-- ARGV[1] job id
--
-- Returns 1 when the job was put in the backlog (due now), 0 when it was in the backlog
-- already or holds a live admission lease (it was admitted and is being published). The
-- caller holds the job's row lock and has seen it PENDING, so together with the lease check
-- an admitted job is never enqueued a second time.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local lease = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
if lease > now then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])
return 1

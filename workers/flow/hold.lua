-- hold.lua: a worker that has just claimed a job (delivery N) takes the job's claim lease.
--
-- KEYS[1] leases  ZSET member -> lease expiry (us); members are "job_id" (admitted, not yet
--                 claimed) and "job_id:delivery" (claimed by that delivery)
-- KEYS[2] limits  HASH concurrency
-- ARGV[1] job id
-- ARGV[2] delivery number of this claim (the fencing token)
-- ARGV[3] lease length (us) from now
--
-- Returns {held, now_us}: held 1 when the claim "job_id:N" holds a lease afterwards: the
-- admission's slot handed over, the claim's own lease extended (a redelivery of the same
-- claim), or a free slot taken again (the admission lease lapsed while the message waited in
-- the broker). held 0 when the admission lease lapsed and every slot is taken: the job must
-- not run now. The caller runs this under the job's row lock, in the transaction that records
-- delivery N, so no older delivery can take a lease after a newer one. The claim of delivery
-- N-1 is dropped: that worker is fenced out from here on (pace.lua refuses it).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delivery = tonumber(ARGV[2])
local claim = ARGV[1] .. ':' .. delivery
local expiry = string.format('%d', now + tonumber(ARGV[3]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local admitted = redis.call('ZSCORE', KEYS[1], ARGV[1])
local own = redis.call('ZSCORE', KEYS[1], claim)
redis.call('ZREM', KEYS[1], ARGV[1], ARGV[1] .. ':' .. (delivery - 1))
local stamp = string.format('%d', now)
if admitted or own then
  redis.call('ZADD', KEYS[1], expiry, claim)
  return {1, stamp}
end
local concurrency = tonumber(redis.call('HGET', KEYS[2], 'concurrency') or '1')
if redis.call('ZCARD', KEYS[1]) < concurrency then
  redis.call('ZADD', KEYS[1], expiry, claim)
  return {1, stamp}
end
return {0, stamp}

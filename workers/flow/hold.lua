-- hold.lua: a worker that has just claimed a job (delivery N) takes the job's claim lease.
--
-- KEYS[1] leases  ZSET member -> lease expiry (us); members are "job_id" (admitted, not yet
--                 claimed) and "job_id:delivery" (claimed by that delivery)
-- KEYS[2] limits  HASH concurrency, interval_us
-- KEYS[3] request_tat   STRING (optional, with KEYS[4]: pace the claim's first request too)
-- KEYS[4] paused_until  STRING
-- ARGV[1] job id
-- ARGV[2] delivery number of this claim (the fencing token)
-- ARGV[3] lease length (us) from now
--
-- Returns {held, now_us[, granted_us, next_us]}: held 1 when the claim "job_id:N" holds a lease afterwards: the
-- admission's slot handed over, the claim's own lease extended (a redelivery of the same
-- claim), or a free slot taken again (the admission lease lapsed while the message waited in
-- the broker). held 0 when the admission lease lapsed and every slot is taken: the job must
-- not run now. The caller runs this under the job's row lock, in the transaction that records
-- delivery N, so no older delivery can take a lease after a newer one. The claim of delivery
-- N-1 is dropped: that worker is fenced out from here on (pace.lua refuses it).
--
-- With KEYS[3] and KEYS[4], a claim that holds its lease also asks for its first request's
-- slot in the same step, by pace.lua's rule (not while paused, not before request_tat, never
-- without limits): granted_us and next_us are returned when it was granted (the caller uses
-- the slot only if its request leaves right after, as with pace.lua's, or gives it back),
-- nothing more when not (the caller paces as usual). The lease was taken in this very step,
-- so pace.lua's fence check holds for this grant too.
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

local function held()
  redis.call('ZADD', KEYS[1], expiry, claim)
  if not KEYS[4] then
    return {1, stamp}
  end
  if tonumber(redis.call('GET', KEYS[4]) or '0') > now then
    return {1, stamp}
  end
  local interval = tonumber(redis.call('HGET', KEYS[2], 'interval_us') or '-1')
  if interval < 0 or now < tonumber(redis.call('GET', KEYS[3]) or '0') then
    return {1, stamp}
  end
  local next_us = string.format('%d', now + interval)
  redis.call('SET', KEYS[3], next_us, 'PX', math.floor(interval / 1000) + 1000)
  return {1, stamp, stamp, next_us}
end

if admitted or own then
  return held()
end
local concurrency = tonumber(redis.call('HGET', KEYS[2], 'concurrency') or '1')
if redis.call('ZCARD', KEYS[1]) < concurrency then
  return held()
end
return {0, stamp}

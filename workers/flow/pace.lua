-- pace.lua: may this claim send a PMS request now? Checked right before sending.
--
-- KEYS[1] request_tat   STRING earliest time (us) the next request may leave
-- KEYS[2] paused_until  STRING (us)
-- KEYS[3] limits        HASH interval_us
-- KEYS[4] leases        ZSET member -> lease expiry (us)
-- ARGV[1] the asking job's claim member "job_id:delivery"
--
-- Returns {allowed, wait_us, granted_us, next_us}: allowed 1 means send now (the next request
-- may leave one interval after this moment: granted_us is this moment, next_us the new
-- request_tat, both for give_back.lua should the request not leave right away); allowed 0 means wait wait_us and ask again; allowed -1 means
-- the limits hash is missing: the caller reloads it and asks again (pacing never runs
-- unlimited); allowed -2 means the claim no longer holds a live lease (it lapsed, or the job
-- was reclaimed for a newer delivery): the worker is fenced out and must not send anything.
-- The fence is checked first, in the same atomic step that grants the slot.
--
-- Everything is decided on Redis's clock at the moment of sending, never as a reservation for
-- later. Consecutive requests leave at least interval_us apart, with no catch-up for a request
-- that left late, so any n+1 requests span at least n * interval_us: the window plus the
-- margin (limits.py), which absorbs the variation of the delay between this check and the
-- request's arrival at the PMS.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local lease = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[1]) or '0')
if lease <= now then
  return {-2, '0'}
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return {0, string.format('%d', paused - now)}
end
local interval = tonumber(redis.call('HGET', KEYS[3], 'interval_us') or '-1')
if interval < 0 then
  return {-1, '0'}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if now < tat then
  return {0, string.format('%d', tat - now)}
end
local next_us = string.format('%d', now + interval)
redis.call('SET', KEYS[1], next_us, 'PX', math.floor(interval / 1000) + 1000)
return {1, '0', string.format('%d', now), next_us}

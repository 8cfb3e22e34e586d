-- pace.lua: may the integration send a PMS request now? Checked right before sending.
--
-- KEYS[1] request_tat   STRING earliest time (us) the next request may leave
-- KEYS[2] paused_until  STRING (us)
-- KEYS[3] limits        HASH interval_us
--
-- Returns {allowed, wait_us}: allowed 1 means send now (the next request may leave one
-- interval after this moment); allowed 0 means wait wait_us and ask again; allowed -1 means
-- the limits hash is missing: the caller reloads it and asks again (pacing never runs
-- unlimited). The check is made on Redis's clock at the moment of sending, never as a
-- reservation for later, so a worker that oversleeps cannot squeeze its request closer to the
-- next one: consecutive requests leave at least interval_us apart, whatever the sleeps.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

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
local next_tat = now + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX',
  math.floor(interval / 1000) + 1000)
return {1, '0'}

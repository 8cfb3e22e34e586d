-- pace.lua: reserve the integration's next PMS request slot.
--
-- KEYS[1] request_tat   STRING next free request slot (us)
-- KEYS[2] paused_until  STRING (us)
-- KEYS[3] limits        HASH interval_us
-- ARGV[1] longest wait (us) the caller accepts for a reservation
--
-- Returns {reserved, wait_us}: reserved 1 means the slot is the caller's, to be used after
-- waiting wait_us; reserved 0 means nothing was reserved (paused, or the next slot is further
-- than ARGV[1] away): wait wait_us and call again; reserved -1 means the limits hash is
-- missing: the caller reloads it and calls again (pacing never runs unlimited). Slots are spaced interval_us apart and a
-- reservation never moves earlier than a previous one, so requests never bunch up.
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
local start = math.max(tat, now)
local max_wait = tonumber(ARGV[1])
if start - now > max_wait then
  return {0, string.format('%d', start - now - max_wait)}
end
local next_tat = start + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX',
  math.floor((next_tat - now) / 1000) + 1000)
return {1, string.format('%d', start - now)}

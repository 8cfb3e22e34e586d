-- pause.lua: stop admissions and requests of one integration for a while (a PMS 429).
--
-- KEYS[1] paused_until  STRING (us)
-- ARGV[1] pause length (us) from now
--
-- Returns the pause's end (us). A pause only ever grows: a shorter Retry-After received
-- later does not cut short a longer one.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = math.max(now + tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%d', until_us), 'PX', math.floor((until_us - now) / 1000) + 1)
return string.format('%d', until_us)

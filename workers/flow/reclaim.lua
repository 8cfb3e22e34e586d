-- reclaim.lua: take a running job's claim lease away once it has lapsed (its worker is lost).
--
-- KEYS[1] leases  ZSET member -> lease expiry (us)
-- ARGV[1] claim member "job_id:delivery"
--
-- Returns {reclaimed, now_us}: reclaimed 1 when the claim's lease had expired (or was gone)
-- and is now removed, so that worker is fenced out for good (pace.lua and renew.lua refuse
-- it) before the job is handed to anyone else; 0 when the lease is live (its worker renews
-- it), whatever any host's clock says. The decision is made on Redis's clock only.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = string.format('%d', now)
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if expiry > now then
  return {0, stamp}
end
redis.call('ZREM', KEYS[1], ARGV[1])
return {1, stamp}

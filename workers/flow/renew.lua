-- renew.lua: the heartbeat of a running job extends its claim lease, if it still has it.
--
-- KEYS[1] leases  ZSET member -> lease expiry (us)
-- ARGV[1] claim member "job_id:delivery"
-- ARGV[2] lease length (us) from now
--
-- Returns {renewed, now_us}: renewed 1 when the claim's lease was live and now ends lease
-- length after now; 0 when it had expired (even if not yet pruned) or was taken away (the job
-- was reclaimed for a newer delivery). A lapsed lease is never revived: its slot may already
-- serve another job, and the job may already be handed out again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = string.format('%d', now)
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if expiry <= now then
  return {0, stamp}
end
redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
return {1, stamp}

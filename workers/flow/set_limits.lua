-- set_limits.lua: write an integration's limits unless Redis already has newer ones.
--
-- KEYS[1] limits  HASH version_us, interval_us, tolerance_us, concurrency
-- ARGV[1] version_us (the integration's updated_at in the job store, us)
-- ARGV[2] interval_us, ARGV[3] tolerance_us, ARGV[4] concurrency
--
-- Returns 1 when written, 0 when the hash holds a newer version (two concurrent PUTs whose
-- writes reach Redis out of order leave the newer limits, not the last written).
local current = tonumber(redis.call('HGET', KEYS[1], 'version_us') or '-1')
if current > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'version_us', ARGV[1], 'interval_us', ARGV[2],
  'tolerance_us', ARGV[3], 'concurrency', ARGV[4])
redis.call('HDEL', KEYS[1], 'catchup_us')
return 1

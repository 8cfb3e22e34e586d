-- reschedule.lua: after working on a claimed integration, set its next admission time.
--
-- KEYS[1] ready  ZSET integration_id -> next admission time (us)
-- ARGV[1] integration id
-- ARGV[2] the claim score this dispatcher set (claim_due.lua)
-- ARGV[3] next admission time (us), or -1 when its backlog is empty
--
-- If nobody touched the entry since the claim, it takes the new time (or leaves the set).
-- If an enqueue or release moved it meanwhile (to an earlier time), the earlier time wins.
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
local next_us = tonumber(ARGV[3])
local untouched = current and tonumber(current) == tonumber(ARGV[2])
if next_us < 0 then
  if untouched then
    redis.call('ZREM', KEYS[1], ARGV[1])
  end
  return 0
end
if untouched or not current then
  redis.call('ZADD', KEYS[1], string.format('%d', next_us), ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'LT', string.format('%d', next_us), ARGV[1])
end
return 1

-- claim_due.lua: take the integrations whose next admission time has come.
--
-- KEYS[1] ready  ZSET integration_id -> next admission time (us)
-- ARGV[1] most integrations to take
-- ARGV[2] claim length (us)
--
-- Returns {now_us, claim_us, next_us, integration_id...}: each id returned is moved to
-- now + claim length, so other dispatchers skip it while this one works on it (and a
-- dispatcher that dies only delays it by the claim). next_us is the earliest score left after
-- the claim (-1 when the set is empty), for the caller's sleep. Oldest-due first: with many
-- integrations ready, each gets its turn (round robin).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local claim = now + tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], string.format('%d', claim), id)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_us = -1
if #first > 0 then
  next_us = tonumber(first[2])
end
local result = {string.format('%d', now), string.format('%d', claim), string.format('%d', next_us)}
for _, id in ipairs(due) do
  result[#result + 1] = id
end
return result

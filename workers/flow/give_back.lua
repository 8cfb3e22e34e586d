-- give_back.lua: undo a pacing pass whose request will not leave (the pass came back stale).
--
-- KEYS[1] request_tat  STRING earliest time (us) the next request may leave
-- ARGV[1] the request_tat that pass set
-- ARGV[2] the time (us) that pass was granted
--
-- Returns 1 when the slot was given back: request_tat is moved back to the pass's own grant
-- time, so the next pass may go at once, still at least one interval after the request
-- before it (that request's interval had passed when the stale pass was granted). Returns 0
-- when another pass was granted since: the slot stays spent, nothing is compressed.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', 1000)
  return 1
end
return 0

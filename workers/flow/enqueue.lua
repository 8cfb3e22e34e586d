-- enqueue.lua: put a job in its integration's backlog, due after a delay.
--
-- KEYS[1] backlog  ZSET job_id -> due time (us)
-- ARGV[1] job id
-- ARGV[2] delay (us) from now, on Redis's clock; or "ahead": due at time 0, ahead of every
--         job waiting (a job whose run was interrupted by a lost worker keeps its turn rather
--         than queueing again behind the whole backlog)
--
-- Returns the job's due time (us). A job already in the backlog keeps its place (NX).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local due = 0
if ARGV[2] ~= 'ahead' then
  due = now + tonumber(ARGV[2])
end
redis.call('ZADD', KEYS[1], 'NX', string.format('%d', due), ARGV[1])
return redis.call('ZSCORE', KEYS[1], ARGV[1])

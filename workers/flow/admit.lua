-- admit.lua: admit jobs of one integration from its backlog, if limits allow; first, optionally,
-- what the caller has to tell flow control anyway (a finished claim, new jobs, the PMS's limit
-- headers), so admission costs no round trip of its own on the hot path.
--
-- KEYS[1] backlog       ZSET job_id -> due time (us)
-- KEYS[2] leases        ZSET member -> lease expiry (us): "job_id" while admitted, then
--                       "job_id:delivery" once claimed (hold.lua)
-- KEYS[3] admit_tat     STRING GCRA theoretical arrival time of admissions (us)
-- KEYS[4] paused_until  STRING (us)
-- KEYS[5] limits        HASH interval_us, tolerance_us, concurrency
-- KEYS[6] pms_limits    HASH the PMS's own rate-limit headers, as it last sent them
-- KEYS[7] wake_at       STRING the earliest ready-set time (us) a caller was told to write
-- ARGV[1] most jobs to admit in this call
-- ARGV[2] lease length (us)
-- ARGV[3] "claim": the caller holds the integration's ready-set claim (claim_due.lua) and
--         reschedules it itself, so wake_at is forgotten; "wake": the caller writes next_us
--         to the ready set only when this script says so (see wake below)
-- ARGV[4] a lease member its owner gives back first ("job_id:delivery" of a finished claim),
--         or "" for none. Only that member goes: a stale claim never frees a newer one's.
-- ARGV[5] n, how many jobs to put in the backlog first; then n pairs ARGV[6..5+2n]:
--         job id, delay (us) from now on Redis's clock or "ahead" (due at time 0, ahead of
--         every job waiting: an interrupted run keeps its turn). A job already in the
--         backlog keeps its place (NX); the batch keeps its order.
-- ARGV[6+2n..] name, value pairs of PMS rate-limit headers to store in KEYS[6].
--
-- Returns {status, next_us, wake, job_id...}:
--   status "ok": the job ids admitted (each now holds a lease); next_us is when the next
--     admission may happen (-1: the backlog is empty; a release or enqueue will wake us).
--   status "paused": nothing admitted before next_us (the PMS asked for a pause).
--   status "nolimits": the limits hash is missing; the caller writes it and calls again
--     (without the prelude: it was applied).
--   wake 1: the caller must write next_us to the ready set (ZADD LT), 0: it need not, as a
--     ready-set time no later than next_us was written since the last claimed admission, and
--     only that admission's dispatcher may remove it (reschedule.lua), after this script has
--     forgotten wake_at. wake_at expires a second after its time, so a lost ready-set write
--     costs at most that long.
-- A job is admitted only when: the integration is not paused, a concurrency slot is free
-- (expired leases are pruned first, so a dead worker's slot comes back), and the admission
-- GCRA allows it (at most `tolerance_us` ahead of the evenly spaced schedule). A backlog entry
-- of a job whose admission lease is still live is dropped, not admitted twice.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function respond(status, next_us, admitted)
  local wake = 0
  if ARGV[3] == 'claim' then
    redis.call('DEL', KEYS[7])
  elseif next_us >= 0 then
    local at = tonumber(redis.call('GET', KEYS[7]) or '-1')
    if at < 0 or at > next_us then
      wake = 1
      local ttl_ms = math.max(0, math.floor((next_us - now) / 1000)) + 1000
      redis.call('SET', KEYS[7], string.format('%d', next_us), 'PX', ttl_ms)
    end
  end
  local result = {status, string.format('%d', next_us), wake}
  for _, job_id in ipairs(admitted) do
    result[#result + 1] = job_id
  end
  return result
end

if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
end
local enqueued = tonumber(ARGV[5])
for i = 0, enqueued - 1 do
  local delay = ARGV[7 + 2 * i]
  local due = 0
  if delay ~= 'ahead' then
    -- A microsecond apart, earliest first: a batch keeps its order in the backlog.
    due = now + tonumber(delay) - (enqueued - 1 - i)
  end
  redis.call('ZADD', KEYS[1], 'NX', string.format('%d', due), ARGV[6 + 2 * i])
end
for i = 6 + 2 * enqueued, #ARGV, 2 do
  redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
end

local limits = redis.call('HMGET', KEYS[5], 'interval_us', 'tolerance_us', 'concurrency')
if not limits[1] then
  return respond('nolimits', -1, {})
end
local interval = tonumber(limits[1])
local tolerance = tonumber(limits[2])
local concurrency = tonumber(limits[3])

local paused = tonumber(redis.call('GET', KEYS[4]) or '0')
if paused > now then
  return respond('paused', paused, {})
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local in_flight = redis.call('ZCARD', KEYS[2])
local tat = tonumber(redis.call('GET', KEYS[3]) or '0')
local lease_us = tonumber(ARGV[2])
local next_us = -1
local admitted = {}

for _ = 1, tonumber(ARGV[1]) do
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #head == 0 then
    next_us = -1
    break
  end
  local due = tonumber(head[2])
  if due > now then
    next_us = due
    break
  end
  if redis.call('ZSCORE', KEYS[2], head[1]) then
    -- Admitted already (expired leases were pruned above): a duplicate entry goes.
    redis.call('ZREM', KEYS[1], head[1])
    next_us = now
  else
    if in_flight >= concurrency then
      local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
      next_us = tonumber(oldest[2])
      break
    end
    local start = math.max(tat, now)
    if start - now > tolerance then
      next_us = start - tolerance
      break
    end
    tat = start + interval
    redis.call('ZREM', KEYS[1], head[1])
    redis.call('ZADD', KEYS[2], now + lease_us, head[1])
    in_flight = in_flight + 1
    admitted[#admitted + 1] = head[1]
    next_us = now
  end
end

if #admitted > 0 then
  redis.call('SET', KEYS[3], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
end
return respond('ok', next_us, admitted)

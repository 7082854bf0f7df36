-- One worker's round with the fleet's per-host state: every host it needs something of, at once.
--
-- Per host, a hash holds the one limit the fleet agrees on, the permits held in total and by
-- each worker ('w:<id>'), a Retry-After pause, the last reserved request start and who was last
-- refused a permit; a sorted set holds each holder's lease expiry. A holder that stops renewing
-- (a dead worker) loses its permits when its lease lapses: they are purged here, by whoever
-- comes next. Times are the Redis server's, so workers on several machines share one clock.
--
-- KEYS[2i-1]  host i's state hash      KEYS[2i]  host i's lease set (worker id -> expiry, ms)
-- ARGV[1]  worker id          ARGV[2]  lease, ms             ARGV[3]  idle state expiry, ms
-- ARGV[4]  initial limit      ARGV[5]  least limit           ARGV[6]  greatest limit
-- ARGV[7]  longest start wait a deferrable request takes, ms
-- ARGV[8]  how long a refusal marks a host as contended, ms
-- then 9 per host, in KEYS order:
--   held      permits this worker holds after this round's returns (its own count is the truth)
--   want      permits it asks for on top
--   must      request starts to reserve however far ahead
--   may       request starts to reserve only within ARGV[7]
--   delay     least ms between two starts
--   seen      the limit a proposal starts from (0: none)
--   proposed  the new limit, applied only if the limit is still `seen` (0: none)
--   pause     ms no request may start from now (a Retry-After; 0: none)
--   tail      ms the worker may start its last reserved request late: the next start is later by it
-- Reply: per host {granted, limit, paused ms, first reserved start (ms, server clock), starts
-- reserved, next free start (ms, server clock), contended (0/1), permits held by the fleet, now
-- (ms, server clock)}
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local me, lease, idle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local initial, least, greatest = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local max_wait, contend_ms = tonumber(ARGV[7]), tonumber(ARGV[8])
local mine_field = 'w:' .. me
local replies = {}
for i = 1, #KEYS / 2 do
  local state, leases = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 8 + (i - 1) * 9
  local believed, want = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local must, may, delay = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local seen, proposed, pause = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
  local tail = tonumber(ARGV[a + 9])
  local v = redis.call('HMGET', state, 'limit', 'held', mine_field, 'paused_until', 'last_start', 'wanted_at', 'wanted_by')
  local limit = tonumber(v[1] or initial)
  local held = tonumber(v[2] or '0')
  local mine = tonumber(v[3] or '0')
  local paused_until = tonumber(v[4] or '0')
  local last_start = tonumber(v[5] or '0')
  local wanted_at, wanted_by = tonumber(v[6] or '0'), v[7]
  -- Lapsed leases: their permits come back.
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now)) do
    if dead ~= me then
      held = held - tonumber(redis.call('HGET', state, 'w:' .. dead) or '0')
      redis.call('HDEL', state, 'w:' .. dead)
      redis.call('ZREM', leases, dead)
    end
  end
  held = math.max(0, held - mine + believed)
  mine = believed
  if proposed > 0 and seen == limit then limit = proposed end
  limit = math.max(least, math.min(greatest, limit))
  if pause > 0 then paused_until = math.max(paused_until, now + pause) end
  local contended = 0
  if wanted_by and wanted_by ~= me and now - wanted_at < contend_ms then contended = 1 end
  local granted = 0
  if want > 0 and paused_until <= now then
    granted = math.min(want, math.max(0, limit - held))
    if contended == 1 then
      -- Someone else was refused lately: no more than a fair share each.
      local holders = redis.call('ZCARD', leases)
      if mine == 0 then holders = holders + 1 end
      if not redis.call('ZSCORE', leases, wanted_by) then holders = holders + 1 end
      local share = math.max(1, math.floor(limit / holders))
      granted = math.max(0, math.min(granted, share - mine))
    end
    if granted < want then
      redis.call('HSET', state, 'wanted_at', now, 'wanted_by', me)
    end
  end
  mine = mine + granted
  held = held + granted
  local first = math.max(now, last_start + delay)
  local reserved = 0
  if must + may > 0 then
    reserved = must
    while reserved < must + may and first + reserved * delay - now <= max_wait do
      reserved = reserved + 1
    end
    if reserved > 0 then last_start = first + (reserved - 1) * delay + tail end
  end
  local next_free = math.max(now, last_start + delay)
  redis.call('HSET', state, 'limit', limit, 'held', held, 'paused_until', paused_until, 'last_start', last_start)
  if mine > 0 then
    redis.call('HSET', state, mine_field, mine)
    redis.call('ZADD', leases, now + lease, me)
  else
    redis.call('HDEL', state, mine_field)
    redis.call('ZREM', leases, me)
  end
  redis.call('PEXPIRE', state, idle)
  redis.call('PEXPIRE', leases, idle)
  table.insert(replies, {granted, limit, math.max(0, paused_until - now), first, reserved, next_free, contended, held, now})
end
return replies

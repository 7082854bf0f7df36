-- Move parked members back into the queue (a backlog refill), in order, up to the bound.
--
-- Only members still parked move, so concurrent refills of the same backlog documents queue
-- each URL once. A closed crawl (done, or cancelled) takes nothing back; a paused one gets its
-- jobs due far in the future (see register.lua).
--
-- KEYS[1]  the prefix of the crawl's seen-set buckets (addressed as register.lua explains)
-- KEYS[2]  its stats hash            KEYS[3]  the queue
-- ARGV[1]  now, ms                   ARGV[2]  job record expiry, ms
-- ARGV[3]  arq's job key prefix      ARGV[4]  max_queued
-- ARGV[5..] groups of three: member digest, job id, job record
-- Reply: {members queued, members dealt with (queued, or found queued already)}
-- (seen_number, seen_bucket and seen_layout come from seen_buckets.lua, loaded before this script.)
local seen, stats, queue = KEYS[1], KEYS[2], KEYS[3]
local now, expires, prefix, max_queued = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local control = redis.call('HMGET', stats, 'closed', 'paused', 'queued')
if control[1] == '1' then return {0, 0} end
local due = tonumber(now) + tonumber(control[2] or '0')
local queued = tonumber(control[3] or '0')
local level, split = seen_layout(stats)
local promoted, examined = 0, 0
for i = 5, #ARGV, 3 do
  local member, job_id, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if queued + promoted >= max_queued then break end
  examined = examined + 1
  local bucket = seen_bucket(seen, member, level, split)
  if redis.call('HGET', bucket, member) == 'w' then
    redis.call('HSET', bucket, member, 'q')
    redis.call('PSETEX', prefix .. job_id, expires, payload)
    redis.call('ZADD', queue, due, job_id)
    promoted = promoted + 1
  end
end
if promoted > 0 then
  redis.call('HINCRBY', stats, 'queued', promoted)
  redis.call('HINCRBY', stats, 'waiting', -promoted)
end
return {promoted, examined}

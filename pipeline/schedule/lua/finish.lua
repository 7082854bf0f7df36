-- Settle a member: queued ('q', or 'o' for a page its list job keeps) -> stored, failed, skipped
-- by robots.txt or cancelled, exactly once, however often its job runs. For child pages,
-- discovered == stored + unchanged + failed + skipped_robots + cancelled once nothing is pending.
--
-- `queued` drops only when the job has left the queue (see Departures in frontier.py), so it
-- counts exactly the crawl's jobs in Redis. With the five extra KEYS, the running job is also
-- taken out of the queue in the same step, when nothing else is left for it to do: other URLs
-- of the crawl are pending (so this job does not complete it) and no backlog is waiting.
-- The call that settles the crawl's last URL closes it (stats field `closed`): from then on the
-- other scripts queue nothing for it, so a late re-run of one of its jobs cannot revive it.
--
-- KEYS[1]  the prefix of the crawl's seen-set buckets (addressed as register.lua explains)
-- KEYS[2]  its stats hash
-- optional: KEYS[3] the job's record, KEYS[4] its retry counter, KEYS[5] its in-progress key,
--           KEYS[6] the queue, KEYS[7] arq's abort set
-- ARGV[1]  member digest             ARGV[2]  counter to bump (stored, unchanged, failed,
--                                              skipped_robots, cancelled, lists_done, ...)
-- ARGV[3]  new state ('s' stored, 'f' failed, 'r' skipped by robots.txt, 'c' cancelled)
-- ARGV[4]  '1' if the page got a final HTTP response
-- ARGV[5]  retries it took           ARGV[6]  the job id (with the optional KEYS)
-- Reply: {settled by this call (0/1), pending, queued, waiting, job taken out of the queue (0/1)}
-- (seen_number, seen_bucket and seen_layout come from seen_buckets.lua, loaded before this script.)
local seen, stats = KEYS[1], KEYS[2]
local member, counter, state, fetched, retries = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local level, split = seen_layout(stats)
local bucket = seen_bucket(seen, member, level, split)
local changed = 0
local current = redis.call('HGET', bucket, member)
if current == 'q' or current == 'o' then
  redis.call('HSET', bucket, member, state)
  redis.call('HINCRBY', stats, counter, 1)
  if fetched ~= '0' then redis.call('HINCRBY', stats, 'fetched', 1) end
  if retries ~= '0' then redis.call('HINCRBY', stats, 'retries', retries) end
  if redis.call('HINCRBY', stats, 'pending', -1) == 0 then redis.call('HSET', stats, 'closed', 1) end
  changed = 1
end
local values = redis.call('HMGET', stats, 'pending', 'queued', 'waiting')
local pending, queued, waiting = tonumber(values[1] or '-1'), tonumber(values[2] or '0'), tonumber(values[3] or '0')
local retired = 0
if #KEYS > 2 and pending > 0 and waiting == 0 then
  local job_id = ARGV[6]
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[7], job_id)
  if redis.call('ZREM', KEYS[6], job_id) == 1 then
    queued = redis.call('HINCRBY', stats, 'queued', -1)
  end
  retired = 1
end
return {changed, pending, queued, waiting, retired}

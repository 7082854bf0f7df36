-- Queue a crawl's failed URLs again as fresh attempts (a retry of the crawl), and reopen it.
--
-- Only members still failed ('f') move: each becomes 'q' with a new job record and no tries
-- counted, and its failure is taken back from the counters (and from `fetched` when the failed
-- attempt had an HTTP response), so the crawl's sums hold while it runs again. A page with an
-- empty job record is one its list job keeps: it becomes 'o', with no job of its own.
--
-- KEYS[1]  the prefix of the crawl's seen-set buckets (addressed as register.lua explains)
-- KEYS[2]  its stats hash            KEYS[3]  the queue
-- ARGV[1]  now, ms                   ARGV[2]  job record expiry, ms
-- ARGV[3]  arq's job key prefix      ARGV[4]  retry key prefix      ARGV[5]  TTL of the crawl's keys, s
-- ARGV[6..] groups of five: member digest, counter to take back (failed or lists_failed),
--           '1' if it counted as fetched, job id, job record
-- Reply: how many URLs were queued again (kept pages included)
-- (seen_number, seen_bucket and seen_layout come from seen_buckets.lua, loaded before this script.)
local seen, stats, queue = KEYS[1], KEYS[2], KEYS[3]
local now, expires, job_prefix, retry_prefix, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local level, split = seen_layout(stats)
local queued, kept = 0, 0
for i = 6, #ARGV, 5 do
  local member, counter, fetched, job_id, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local bucket = seen_bucket(seen, member, level, split)
  if redis.call('HGET', bucket, member) == 'f' then
    redis.call('EXPIRE', bucket, ttl)
    redis.call('HINCRBY', stats, counter, -1)
    if fetched == '1' then redis.call('HINCRBY', stats, 'fetched', -1) end
    if payload == '' then
      redis.call('HSET', bucket, member, 'o')
      kept = kept + 1
    else
      redis.call('HSET', bucket, member, 'q')
      redis.call('DEL', retry_prefix .. job_id)
      redis.call('PSETEX', job_prefix .. job_id, expires, payload)
      redis.call('ZADD', queue, now, job_id)
      queued = queued + 1
    end
  end
end
if queued + kept > 0 then
  redis.call('HINCRBY', stats, 'pending', queued + kept)
  redis.call('HINCRBY', stats, 'queued', queued)
  redis.call('HSET', stats, 'closed', 0, 'paused', 0)
end
return queued + kept

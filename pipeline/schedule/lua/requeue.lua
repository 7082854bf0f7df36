-- Queue a crawl's failed URLs again as fresh attempts (a retry of the crawl), and reopen it.
--
-- Only members still failed ('f') move: each becomes 'q' with a new job record and no tries
-- counted, and its failure is taken back from the counters (and from `fetched` when the failed
-- attempt had an HTTP response), so the crawl's sums hold while it runs again. A page with an
-- empty job record is one its list job keeps: it becomes 'o', with no job of its own.
--
-- KEYS[1]  the crawl's url hash      KEYS[2]  its stats hash      KEYS[3]  the queue
-- ARGV[1]  now, ms                   ARGV[2]  job record expiry, ms
-- ARGV[3]  arq's job key prefix      ARGV[4]  retry key prefix
-- ARGV[5..] groups of five: member, counter to take back (failed or lists_failed),
--           '1' if it counted as fetched, job id, job record
-- Reply: how many URLs were queued again (kept pages included)
local urls, stats, queue = KEYS[1], KEYS[2], KEYS[3]
local now, expires, job_prefix, retry_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local queued, kept = 0, 0
for i = 5, #ARGV, 5 do
  local member, counter, fetched, job_id, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if redis.call('HGET', urls, member) == 'f' then
    redis.call('HINCRBY', stats, counter, -1)
    if fetched == '1' then redis.call('HINCRBY', stats, 'fetched', -1) end
    if payload == '' then
      redis.call('HSET', urls, member, 'o')
      kept = kept + 1
    else
      redis.call('HSET', urls, member, 'q')
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

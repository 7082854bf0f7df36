-- Cancel a batch of a crawl's unsettled URLs whose jobs are not running.
--
-- A queued member ('q') whose job holds no in-progress key loses its job record, retry counter
-- and queue entry, becomes 'c' and counts as cancelled; a parked one ('w', in the MongoDB
-- backlog, which the caller clears) likewise, and a page its list job keeps ('o', given with
-- that list job's id). A member whose job is running is left to that job,
-- which settles it as usual (no worker starts a job of a crawl being cancelled, so none is
-- added). Settled members are not touched. So the counters keep adding up (`PAGE_OUTCOMES` and
-- `LIST_OUTCOMES` in pipeline/crawl/status.py).
--
-- KEYS[1]  the prefix of the crawl's seen-set buckets (addressed as register.lua explains)
-- KEYS[2]  its stats hash            KEYS[3]  the queue
-- ARGV[1]  arq's job key prefix      ARGV[2]  in-progress key prefix      ARGV[3]  retry key prefix
-- ARGV[4..] groups of three: member digest, counter to bump (cancelled or lists_cancelled), job id
-- Reply: {members cancelled, members left to their running jobs}
-- (seen_number, seen_bucket and seen_layout come from seen_buckets.lua, loaded before this script.)
local seen, stats, queue = KEYS[1], KEYS[2], KEYS[3]
local job_prefix, progress_prefix, retry_prefix = ARGV[1], ARGV[2], ARGV[3]
local level, split = seen_layout(stats)
local cancelled, running, dequeued, unparked = 0, 0, 0, 0
for i = 4, #ARGV, 3 do
  local member, counter, job_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local bucket = seen_bucket(seen, member, level, split)
  local state = redis.call('HGET', bucket, member)
  local cancel = false
  if state == 'q' or state == 'o' then
    if redis.call('EXISTS', progress_prefix .. job_id) == 1 then
      running = running + 1
    else
      redis.call('DEL', job_prefix .. job_id, retry_prefix .. job_id)
      dequeued = dequeued + redis.call('ZREM', queue, job_id)
      cancel = true
    end
  elseif state == 'w' then
    unparked = unparked + 1
    cancel = true
  end
  if cancel then
    redis.call('HSET', bucket, member, 'c')
    redis.call('HINCRBY', stats, counter, 1)
    cancelled = cancelled + 1
  end
end
if cancelled > 0 then
  redis.call('HINCRBY', stats, 'pending', -cancelled)
  if dequeued > 0 then redis.call('HINCRBY', stats, 'queued', -dequeued) end
  if unparked > 0 then redis.call('HINCRBY', stats, 'waiting', -unparked) end
end
return {cancelled, running}

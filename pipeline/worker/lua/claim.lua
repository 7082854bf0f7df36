-- Claim due jobs for one worker, all of its free slots in one call.
--
-- A job is claimed when it is still in the queue, due, and not in progress anywhere; its
-- in-progress key is set in the same step (SET NX PX), with the lease TTL. A job of a crawl
-- that is held (paused, or being cancelled: a field of the held hash) is never claimed; the
-- hash is looked at per job only when it has any field at all.
--
-- KEYS[1]       the queue (sorted set of job ids scored by due time, ms)
-- KEYS[2..n-1]  the in-progress key of each candidate, in ARGV order
-- KEYS[n]       the held crawls (hash: crawl id -> why)
-- ARGV[1]       now, ms
-- ARGV[2]       claim TTL, ms
-- ARGV[3]       how many jobs to claim at most
-- ARGV[4..]     the candidates' job ids
-- Reply: a flat list of job id, score pairs, one pair per claimed job.
local queue, held = KEYS[1], KEYS[#KEYS]
local now, ttl, wanted = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local holding = redis.call('HLEN', held) > 0
local claimed = {}
for i = 2, #KEYS - 1 do
  if #claimed >= wanted * 2 then break end
  local job_id = ARGV[i + 2]
  local score = redis.call('ZSCORE', queue, job_id)
  -- A crawl's jobs are named <kind>:<crawl id>:<...> (see frontier.job_id and completion_job_id).
  local crawl = holding and string.match(job_id, '^%a+:([^:]+):')
  if score and tonumber(score) <= now and not (crawl and redis.call('HEXISTS', held, crawl) == 1) then
    if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ttl) then
      table.insert(claimed, job_id)
      table.insert(claimed, score)
    end
  end
end
return claimed

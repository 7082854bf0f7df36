-- Claim due jobs for one worker, all of its free slots in one call.
--
-- A job is claimed when it is still in the queue, due, and not in progress anywhere; its
-- in-progress key is set in the same step (SET NX PX), with the lease TTL.
--
-- KEYS[1]     the queue (sorted set of job ids scored by due time, ms)
-- KEYS[2..n]  the in-progress key of each candidate, in ARGV order
-- ARGV[1]     now, ms
-- ARGV[2]     claim TTL, ms
-- ARGV[3]     how many jobs to claim at most
-- ARGV[4..]   the candidates' job ids
-- Reply: a flat list of job id, score pairs, one pair per claimed job.
local queue = KEYS[1]
local now, ttl, wanted = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local claimed = {}
for i = 2, #KEYS do
  if #claimed >= wanted * 2 then break end
  local job_id = ARGV[i + 2]
  local score = redis.call('ZSCORE', queue, job_id)
  if score and tonumber(score) <= now then
    if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ttl) then
      table.insert(claimed, job_id)
      table.insert(claimed, score)
    end
  end
end
return claimed

-- Move some of a crawl's queued jobs far into the future (pause), or back (resume).
--
-- A paused crawl's jobs stay in the queue but are not due, so no worker reads or claims them and
-- they do not stand at the head of the queue in other crawls' way. Pausing adds the shift to
-- every score below it; resuming takes it off every score at or above it. So a job's own delay
-- (a retry's backoff) survives a pause, and a repeated call moves nothing twice.
--
-- KEYS[1]  the queue (sorted set of job ids scored by due time, ms)
-- ARGV[1]  the shift, ms (> 0: pause; < 0: resume)
-- ARGV[2..] job ids
-- Reply: how many jobs moved
local queue = KEYS[1]
local shift = tonumber(ARGV[1])
local moved = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', queue, ARGV[i])
  if score then
    score = tonumber(score)
    if (shift > 0 and score < shift) or (shift < 0 and score >= -shift) then
      redis.call('ZADD', queue, 'XX', score + shift, ARGV[i])
      moved = moved + 1
    end
  end
end
return moved

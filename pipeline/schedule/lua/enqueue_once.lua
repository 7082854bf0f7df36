-- Queue a job unless a job with that id was ever queued (its marker outlives the job).
--
-- KEYS[1]  the job's record key      KEYS[2]  the queue      KEYS[3]  the once-marker
-- ARGV[1]  now, ms (score)           ARGV[2]  record expiry, ms
-- ARGV[3]  the job record            ARGV[4]  marker TTL, s      ARGV[5]  the job id
-- Reply: 1 if queued, 0 if the id was queued before
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[4]) then
  redis.call('PSETEX', KEYS[1], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[5])
  return 1
end
return 0

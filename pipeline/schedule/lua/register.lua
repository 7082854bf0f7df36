-- Register the URLs one page led to: queue the new ones, park what does not fit, count the rest.
--
-- A new member is queued (its arq job record written, its state 'q') while the crawl has fewer
-- than max_queued jobs in Redis, else parked (state 'w') for the caller to write to the MongoDB
-- backlog. Members already parked are returned again, so a job that died before writing them
-- can do it on its re-run. Child pages past max_pages are counted as capped, not queued. A page
-- with an empty job record is one its list job keeps: it is counted with state 'o' and no job.
-- A closed crawl (done, or cancelled) takes nothing new: a late job cannot bring it back.
-- While the crawl is paused, new jobs are due only far in the future (stats field `paused`
-- holds that shift, in ms), so they wait in the queue without standing in other crawls' way.
--
-- KEYS[1]  the crawl's url hash (member -> state)
-- KEYS[2]  the crawl's stats hash (counters)
-- KEYS[3]  the queue (sorted set)
-- ARGV[1]  now, ms (the new jobs' score)      ARGV[2]  job record expiry, ms
-- ARGV[3]  max_pages                          ARGV[4]  TTL of the crawl's keys, s
-- ARGV[5]  arq's job key prefix               ARGV[6]  links skipped as invalid
-- ARGV[7]  links skipped as out of scope      ARGV[8]  max_queued
-- ARGV[9..] groups of four: member, kind ('page', 'list' or 'sitemap'), job id, job record
-- Reply: {new pages, new list pages, capped, {parked members}}
local urls, stats, queue = KEYS[1], KEYS[2], KEYS[3]
local now, expires, max_pages, ttl, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local skipped_invalid, skipped_scope, max_queued = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local control = redis.call('HMGET', stats, 'closed', 'paused', 'discovered', 'queued')
if control[1] == '1' then return {0, 0, 0, {}} end
local due = tonumber(now) + tonumber(control[2] or '0')
local discovered = tonumber(control[3] or '0')
local queued = tonumber(control[4] or '0')
local new_pages, new_lists, capped, new_queued, new_waiting = 0, 0, 0, 0, 0
local parked = {}
for i = 9, #ARGV, 4 do
  local member, kind, job_id, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local state = redis.call('HGET', urls, member)
  if state == 'w' then
    table.insert(parked, member)
  elseif not state then
    if kind == 'page' and discovered >= max_pages then
      capped = capped + 1
    else
      if payload == '' then
        redis.call('HSET', urls, member, 'o')
      elseif queued < max_queued then
        redis.call('HSET', urls, member, 'q')
        redis.call('PSETEX', prefix .. job_id, expires, payload)
        redis.call('ZADD', queue, due, job_id)
        queued = queued + 1
        new_queued = new_queued + 1
      else
        redis.call('HSET', urls, member, 'w')
        table.insert(parked, member)
        new_waiting = new_waiting + 1
      end
      if kind == 'page' then
        discovered = discovered + 1
        new_pages = new_pages + 1
      else
        new_lists = new_lists + 1
      end
    end
  end
end
if new_pages > 0 then redis.call('HINCRBY', stats, 'discovered', new_pages) end
if new_lists > 0 then redis.call('HINCRBY', stats, 'lists', new_lists) end
if capped > 0 then redis.call('HINCRBY', stats, 'capped', capped) end
if skipped_invalid > 0 then redis.call('HINCRBY', stats, 'skipped_invalid', skipped_invalid) end
if skipped_scope > 0 then redis.call('HINCRBY', stats, 'skipped_scope', skipped_scope) end
if new_queued > 0 then redis.call('HINCRBY', stats, 'queued', new_queued) end
if new_waiting > 0 then redis.call('HINCRBY', stats, 'waiting', new_waiting) end
if new_pages + new_lists > 0 then redis.call('HINCRBY', stats, 'pending', new_pages + new_lists) end
redis.call('EXPIRE', urls, ttl)
redis.call('EXPIRE', stats, ttl)
return {new_pages, new_lists, capped, parked}

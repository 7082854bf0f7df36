-- Register the URLs one page led to: queue the new ones, park what does not fit, count the rest.
--
-- A crawl's seen-set holds a 12-byte digest per URL, not the URL, in small hashes ("buckets",
-- digest -> state) that Redis keeps in its compact encoding (up to 128 fields). The buckets grow
-- with the crawl by linear hashing: a digest's first four bytes, h, name bucket h mod 2^level,
-- or h mod 2^(level+1) below the split pointer; whenever the set holds more than FILL members per
-- bucket, the bucket at the split pointer is split in two. `seen_level` and `seen_split` live in
-- the stats hash; finish, promote, cancel and requeue address buckets the same way. Buckets
-- written to get the crawl's TTL, and once a day all of them do (`seen_refreshed`), so a long
-- crawl forgets none of its URLs while it runs.
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
-- KEYS[1]  the prefix of the crawl's seen-set buckets (a bucket is KEYS[1] .. n)
-- KEYS[2]  the crawl's stats hash (counters)
-- KEYS[3]  the queue (sorted set)
-- ARGV[1]  now, ms (the new jobs' score)      ARGV[2]  job record expiry, ms
-- ARGV[3]  max_pages                          ARGV[4]  TTL of the crawl's keys, s
-- ARGV[5]  arq's job key prefix               ARGV[6]  links skipped as invalid
-- ARGV[7]  links skipped as out of scope      ARGV[8]  max_queued
-- ARGV[9..] groups of four: member digest, kind ('page', 'list' or 'sitemap'), job id, job record
-- Reply: {new pages, new list pages, capped, {parked member digests}}
-- (seen_number, seen_bucket and seen_layout come from seen_buckets.lua, loaded before this script.)
local FILL = 40
local seen, stats, queue = KEYS[1], KEYS[2], KEYS[3]
local now, expires, max_pages, ttl, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local skipped_invalid, skipped_scope, max_queued = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local control = redis.call(
  'HMGET', stats, 'closed', 'paused', 'discovered', 'queued', 'lists', 'seen_level', 'seen_split', 'seen_refreshed'
)
if control[1] == '1' then return {0, 0, 0, {}} end
local due = tonumber(now) + tonumber(control[2] or '0')
local discovered = tonumber(control[3] or '0')
local queued = tonumber(control[4] or '0')
local lists = tonumber(control[5] or '0')
local level, split = tonumber(control[6] or '0'), tonumber(control[7] or '0')
local refreshed = tonumber(control[8] or '0')
local new_pages, new_lists, capped, new_queued, new_waiting = 0, 0, 0, 0, 0
local parked, touched = {}, {}
for i = 9, #ARGV, 4 do
  local member, kind, job_id, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local bucket = seen_bucket(seen, member, level, split)
  local state = redis.call('HGET', bucket, member)
  if state == 'w' then
    table.insert(parked, member)
  elseif not state then
    if kind == 'page' and discovered >= max_pages then
      capped = capped + 1
    else
      if payload == '' then
        redis.call('HSET', bucket, member, 'o')
      elseif queued < max_queued then
        redis.call('HSET', bucket, member, 'q')
        redis.call('PSETEX', prefix .. job_id, expires, payload)
        redis.call('ZADD', queue, due, job_id)
        queued = queued + 1
        new_queued = new_queued + 1
      else
        redis.call('HSET', bucket, member, 'w')
        table.insert(parked, member)
        new_waiting = new_waiting + 1
      end
      if not touched[bucket] then
        redis.call('EXPIRE', bucket, ttl)
        touched[bucket] = true
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
-- Grow: split buckets until the set holds at most FILL members per bucket.
local members, buckets, grown = discovered + lists + new_lists, 2 ^ level + split, false
while members > FILL * buckets do
  local base = 2 ^ level
  local from, to = seen .. split, seen .. (split + base)
  local fields = redis.call('HGETALL', from)
  local moved = false
  for i = 1, #fields, 2 do
    if seen_number(fields[i]) % (2 * base) ~= split then
      redis.call('HSET', to, fields[i], fields[i + 1])
      redis.call('HDEL', from, fields[i])
      moved = true
    end
  end
  if moved then redis.call('EXPIRE', to, ttl) end
  split = split + 1
  if split == base then
    level, split = level + 1, 0
  end
  buckets = buckets + 1
  grown = true
end
if grown then redis.call('HSET', stats, 'seen_level', level, 'seen_split', split) end
local now_s = math.floor(tonumber(now) / 1000)
if now_s - refreshed > tonumber(ttl) / 7 then
  for n = 0, buckets - 1 do redis.call('EXPIRE', seen .. n, ttl) end
  redis.call('HSET', stats, 'seen_refreshed', now_s)
end
redis.call('EXPIRE', stats, ttl)
return {new_pages, new_lists, capped, parked}

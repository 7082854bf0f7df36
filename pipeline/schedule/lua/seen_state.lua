-- The state of one member of a crawl's seen-set ('q', 'w', 'o', 's', 'f', 'r', 'c'), or nil.
--
-- KEYS[1]  the prefix of the crawl's seen-set buckets (addressed as register.lua explains)
-- KEYS[2]  its stats hash
-- ARGV[1]  member digest
-- Reply: the member's state, or nil if the crawl never registered it
local seen, stats = KEYS[1], KEYS[2]
local layout = redis.call('HMGET', stats, 'seen_level', 'seen_split')
local level, split = tonumber(layout[1] or '0'), tonumber(layout[2] or '0')
local function bucket_of(member)
  local a, b, c, d = string.byte(member, 1, 4)
  local h, base = ((a * 256 + b) * 256 + c) * 256 + d, 2 ^ level
  local n = h % base
  if n < split then n = h % (2 * base) end
  return seen .. n
end
return redis.call('HGET', bucket_of(ARGV[1]), ARGV[1])

-- The state of one member of a crawl's seen-set ('q', 'w', 'o', 's', 'f', 'r', 'c'), or nil.
--
-- KEYS[1]  the prefix of the crawl's seen-set buckets (addressed as register.lua explains)
-- KEYS[2]  its stats hash
-- ARGV[1]  member digest
-- Reply: the member's state, or nil if the crawl never registered it
-- (seen_number, seen_bucket and seen_layout come from seen_buckets.lua, loaded before this script.)
local seen, stats = KEYS[1], KEYS[2]
local level, split = seen_layout(stats)
return redis.call('HGET', seen_bucket(seen, ARGV[1], level, split), ARGV[1])

-- Where a member digest lives in a crawl's seen-set: prepended, when they are loaded, to every
-- script that reads or writes the seen-set (see `frontier.py`). The set is split into buckets by
-- linear hashing (register.lua, which grows it, explains the layout).

-- The number a digest's first four bytes make.
local function seen_number(member)
  local a, b, c, d = string.byte(member, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- The bucket of `member` for the set's current `level` and `split` pointer.
local function seen_bucket(seen, member, level, split)
  local h, base = seen_number(member), 2 ^ level
  local n = h % base
  if n < split then n = h % (2 * base) end
  return seen .. n
end

-- The set's `level` and `split` pointer, from the crawl's stats hash.
local function seen_layout(stats)
  local layout = redis.call('HMGET', stats, 'seen_level', 'seen_split')
  return tonumber(layout[1] or '0'), tonumber(layout[2] or '0')
end


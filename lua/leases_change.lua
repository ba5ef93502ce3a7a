-- leases_change.lua: add names to a namespace's registry of many leases, or remove them.
--
-- "add" registers each name not yet registered (ZADD NX, score = Redis ms), refusing the whole
-- call when the registry would exceed ARGV[4] names; with ARGV[5] it also sets each named
-- lease's preferred holders (affinity hash, field = lease, value = node ids in order).
-- "remove" unregisters each name (ZREM) and deletes its preferred holders; it never touches
-- a lease's tenure hash, so a name added again keeps its terms rising.
-- When anything changed, the version is INCRed and leases_changed is announced (PUBLISH +
-- history stream: added, removed, version, at, and preferred_for / preferred when preferred
-- holders were set); a call that changes nothing changes and announces nothing. Every key is
-- checked before the first write: one of another type fails the call with nothing applied.
--
-- KEYS[1] registry sorted set    KEYS[2] registry version string
-- KEYS[3] affinity hash          KEYS[4] history stream (capped)
-- ARGV[1] "add" | "remove"   ARGV[2] events channel   ARGV[3] history max length
-- ARGV[4] most names the registry may hold   ARGV[5] preferred holders, comma-separated node
-- ids ("" = leave the affinity as it is; only with "add")   ARGV[6..] lease names
-- Returns {"changed" | "unchanged", now_ms, version, n, the n names added or removed,
--          m, the m names whose preferred holders changed}
--       | {"too_many", now_ms, registered, limit, new names asked for} (nothing changed)
--       | error COORDINATOR_WRONGTYPE <key> | COORDINATOR_CORRUPT <version key> version.
local registry_key, version_key, affinity_key, history_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local action, channel, history_maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3])
local limit, preferred = tonumber(ARGV[4]), ARGV[5]
local FIRST_NAME = 6

local expected = {[registry_key] = 'zset', [version_key] = 'string', [affinity_key] = 'hash',
  [history_key] = 'stream'}
for key, want in pairs(expected) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= want then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. key) end
end
local stored_version = redis.call('GET', version_key)
if stored_version and not stored_version:match('^%d+$') then
  return redis.error_reply('COORDINATOR_CORRUPT ' .. version_key .. ' version')
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local changed, reassigned = {}, {}
if action == 'add' then
  local new, seen = {}, {}
  for i = FIRST_NAME, #ARGV do
    local name = ARGV[i]
    if not seen[name] and not redis.call('ZSCORE', registry_key, name) then new[#new + 1] = name end
    seen[name] = true
  end
  local registered = redis.call('ZCARD', registry_key)
  if registered + #new > limit then return {'too_many', now, registered, limit, #new} end
  for _, name in ipairs(new) do
    redis.call('ZADD', registry_key, 'NX', now, name)
    changed[#changed + 1] = name
  end
  if preferred ~= '' then
    for i = FIRST_NAME, #ARGV do
      local name = ARGV[i]
      if redis.call('HGET', affinity_key, name) ~= preferred then
        redis.call('HSET', affinity_key, name, preferred)
        reassigned[#reassigned + 1] = name
      end
    end
  end
elseif action == 'remove' then
  for i = FIRST_NAME, #ARGV do
    local name = ARGV[i]
    if redis.call('ZREM', registry_key, name) == 1 then changed[#changed + 1] = name end
    redis.call('HDEL', affinity_key, name)
  end
else
  return redis.error_reply('ERR leases_change: action must be add or remove, not ' .. action)
end

local version = tonumber(stored_version) or 0
if #changed > 0 or #reassigned > 0 then
  version = redis.call('INCR', version_key)
  -- lease names and node ids are [A-Za-z0-9_.:@-] (checked by the caller): JSON strings as
  -- they are; cjson would write an empty list as {}
  local function list(names)
    if #names == 0 then return '[]' end
    return '["' .. table.concat(names, '","') .. '"]'
  end
  local added, removed = changed, {}
  if action == 'remove' then added, removed = {}, changed end
  local event = '{"type":"leases_changed","added":' .. list(added) .. ',"removed":' .. list(removed)
  if #reassigned > 0 then
    local holders = {}
    for node_id in preferred:gmatch('[^,]+') do holders[#holders + 1] = node_id end
    event = event .. ',"preferred_for":' .. list(reassigned) .. ',"preferred":' .. list(holders)
  end
  event = event .. ',"version":' .. version .. ',"at":' .. string.format('%.0f', now) .. '}'
  redis.call('XADD', history_key, 'MAXLEN', '~', history_maxlen, '*', 'event', event)
  redis.call('PUBLISH', channel, event)
end

local reply = {(#changed > 0 or #reassigned > 0) and 'changed' or 'unchanged', now, version, #changed}
for _, name in ipairs(changed) do reply[#reply + 1] = name end
reply[#reply + 1] = #reassigned
for _, name in ipairs(reassigned) do reply[#reply + 1] = name end
return reply

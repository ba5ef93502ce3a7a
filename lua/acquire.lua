-- acquire.lua: acquire-or-renew the leader lease in one atomic step.
--
-- Caller holds it    -> expiry and renewed_at move forward, term unchanged, nothing
--                       published; code "renew". This is the hot path (every renew
--                       interval), kept to TIME, HMGET, GET, HSET and PEXPIREAT.
-- No live lease      -> the caller becomes holder with term max(stored, highest seen) + 1,
--                       announces leader_changed (PUBLISH + history stream); code "acquire".
-- Another holds it   -> nothing changes; code "held" with the holder's record.
-- Reserved for another (a handover in progress, see release.lua) -> code "held" with a
--                       stand-in record: holder_id = the node it is reserved for,
--                       instance_id "reserved", lease_expires_at = when the reservation ends.
-- All times are the Redis server's clock (TIME), integer milliseconds; the hash expires exactly at
-- lease_expires_at (PEXPIREAT), so the reported expiry is the real one. Host, metadata and
-- preferred holder are written when a tenure starts; a renewal only moves the times.
--
-- KEYS[1] lease hash (expires with the TTL)
-- KEYS[2] tenure hash (never expires: highest term granted, last holder id)
-- KEYS[3] history stream (capped)
-- KEYS[4] automation mode string (only read: it rides along so the daemon needs no extra call)
-- ARGV[1] holder id          ARGV[2] holder host      ARGV[3] instance id (one per process)
-- ARGV[4] ttl in ms          ARGV[5] highest term the caller has seen
-- ARGV[6] metadata json      ARGV[7] preferred holder id ("" for none)
-- ARGV[8] lease name         ARGV[9] events channel   ARGV[10] history max length
-- Returns (automation_mode is "" when unset)
--   {"renew", now_ms, automation_mode, term, acquired_at, lease_expires_at}
--   {"acquire" | "held", now_ms, automation_mode, field1, value1, ...} with the lease hash
--   {"wrongtype", key} | {"corrupt", key, field}, touching nothing.
local lease_key, tenure_key, history_key, mode_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local holder_id, holder_host, instance_id = ARGV[1], ARGV[2], ARGV[3]
local ttl_ms, highest_seen = tonumber(ARGV[4]), tonumber(ARGV[5])
local metadata_json, preferred = ARGV[6], ARGV[7]
local lease_name, channel, history_maxlen = ARGV[8], ARGV[9], tonumber(ARGV[10])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + ttl_ms

-- pcall: a key of another type is reported, not a script error
local cur = redis.pcall('HMGET', lease_key, 'holder_id', 'instance_id', 'term', 'lease_expires_at',
  'acquired_at')
if cur.err then return {'wrongtype', lease_key} end
local mode = redis.pcall('GET', mode_key)
if type(mode) == 'table' then return {'wrongtype', mode_key} end
mode = mode or ''

if cur[1] or cur[2] or cur[3] then
  if not cur[1] or cur[1] == '' then return {'corrupt', lease_key, 'holder_id'} end
  if not cur[2] or cur[2] == '' then return {'corrupt', lease_key, 'instance_id'} end
  if not tonumber(cur[3]) then return {'corrupt', lease_key, 'term'} end
  if not tonumber(cur[4]) then return {'corrupt', lease_key, 'lease_expires_at'} end
  if cur[1] == holder_id and cur[2] == instance_id then
    redis.call('HSET', lease_key, 'lease_expires_at', expires, 'renewed_at', now)
    redis.call('PEXPIREAT', lease_key, expires)
    return {'renew', now, mode, cur[3], cur[5] or '0', expires}
  end
  local out = {'held', now, mode}
  for _, v in ipairs(redis.call('HGETALL', lease_key)) do out[#out + 1] = v end
  return out
end
if redis.call('EXISTS', lease_key) == 1 then
  return {'corrupt', lease_key, 'holder_id'}  -- a hash, but none of the lease's fields
end

-- no live lease: the cold path checks everything it is about to write
local kind = redis.call('TYPE', tenure_key)['ok']
if kind ~= 'none' and kind ~= 'hash' then return {'wrongtype', tenure_key} end
kind = redis.call('TYPE', history_key)['ok']
if kind ~= 'none' and kind ~= 'stream' then return {'wrongtype', history_key} end
local tenure = redis.call('HMGET', tenure_key, 'term', 'holder_id', 'reserved_for', 'reserved_until')
local stored_term = tenure[1]
if stored_term and not tonumber(stored_term) then return {'corrupt', tenure_key, 'term'} end

if tenure[3] and tenure[3] ~= holder_id and (tonumber(tenure[4]) or 0) > now then
  return {'held', now, mode, 'holder_id', tenure[3], 'holder_host', '', 'instance_id', 'reserved',
    'term', tostring(stored_term or 0), 'lease_expires_at', tenure[4], 'reserved', '1'}
end

local term = math.max(tonumber(stored_term) or 0, highest_seen or 0) + 1
local previous = tenure[2]
redis.call('HSET', lease_key, 'holder_id', holder_id, 'holder_host', holder_host,
  'instance_id', instance_id, 'term', term, 'acquired_at', now, 'renewed_at', now,
  'lease_expires_at', expires, 'preferred_holder_id', preferred, 'metadata_json', metadata_json)
redis.call('PEXPIREAT', lease_key, expires)
redis.call('HSET', tenure_key, 'term', term, 'holder_id', holder_id)
redis.call('HDEL', tenure_key, 'reserved_for', 'reserved_until')

local event = cjson.encode({type = 'leader_changed', lease = lease_name, holder_id = holder_id,
  holder_host = holder_host, term = term, previous_holder_id = previous or cjson.null, at = now})
redis.call('XADD', history_key, 'MAXLEN', '~', history_maxlen, '*', 'event', event)
redis.call('PUBLISH', channel, event)

local out = {'acquire', now, mode}
for _, v in ipairs(redis.call('HGETALL', lease_key)) do out[#out + 1] = v end
return out

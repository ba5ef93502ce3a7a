-- acquire.lua: acquire-or-renew the leader lease in one atomic step.
--
-- No live lease      -> the caller becomes holder with term max(stored, highest seen) + 1,
--                       announces leader_changed (PUBLISH + history stream); code "acquire".
-- Caller holds it    -> expiry and renewed_at move forward, term unchanged, nothing
--                       published; code "renew".
-- Another holds it   -> nothing changes; code "held" with the holder's record.
-- Reserved for another (a handover in progress, see release.lua) -> code "held" with a
--                       stand-in record: holder_id = the node it is reserved for,
--                       instance_id "reserved", lease_expires_at = when the reservation ends.
-- All times are the Redis server's clock (TIME), integer milliseconds; the hash expires exactly at
-- lease_expires_at (PEXPIREAT), so the reported expiry is the real one.
--
-- KEYS[1] lease hash (expires with the TTL)
-- KEYS[2] tenure hash (never expires: highest term granted, last holder id)
-- KEYS[3] history stream (capped)
-- KEYS[4] automation mode string (only read: it rides along so the daemon needs no extra call)
-- ARGV[1] holder id          ARGV[2] holder host      ARGV[3] instance id (one per process)
-- ARGV[4] ttl in ms          ARGV[5] highest term the caller has seen
-- ARGV[6] metadata json      ARGV[7] preferred holder id ("" for none)
-- ARGV[8] lease name         ARGV[9] events channel   ARGV[10] history max length
-- Returns {code, now_ms, automation_mode, field1, value1, ...} with the lease hash after the call
--         (automation_mode is "" when unset), or
--         {"wrongtype", key} / {"corrupt", key, field} without touching anything.
local lease_key, tenure_key, history_key, mode_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local holder_id, holder_host, instance_id = ARGV[1], ARGV[2], ARGV[3]
local ttl_ms, highest_seen = tonumber(ARGV[4]), tonumber(ARGV[5])
local metadata_json, preferred = ARGV[6], ARGV[7]
local lease_name, channel, history_maxlen = ARGV[8], ARGV[9], tonumber(ARGV[10])

for _, key in ipairs({lease_key, tenure_key}) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= 'hash' then return {'wrongtype', key} end
end
local kind = redis.call('TYPE', history_key)['ok']
if kind ~= 'none' and kind ~= 'stream' then return {'wrongtype', history_key} end
kind = redis.call('TYPE', mode_key)['ok']
if kind ~= 'none' and kind ~= 'string' then return {'wrongtype', mode_key} end
local mode = redis.call('GET', mode_key) or ''

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + ttl_ms

local stored_term = redis.call('HGET', tenure_key, 'term')
if stored_term and not tonumber(stored_term) then return {'corrupt', tenure_key, 'term'} end

if redis.call('EXISTS', lease_key) == 1 then
  local cur = redis.call('HMGET', lease_key, 'holder_id', 'instance_id', 'term', 'lease_expires_at')
  if not cur[1] or cur[1] == '' then return {'corrupt', lease_key, 'holder_id'} end
  if not cur[2] or cur[2] == '' then return {'corrupt', lease_key, 'instance_id'} end
  if not tonumber(cur[3]) then return {'corrupt', lease_key, 'term'} end
  if not tonumber(cur[4]) then return {'corrupt', lease_key, 'lease_expires_at'} end
  if cur[1] == holder_id and cur[2] == instance_id then
    redis.call('HSET', lease_key, 'lease_expires_at', expires, 'renewed_at', now,
      'holder_host', holder_host, 'metadata_json', metadata_json, 'preferred_holder_id', preferred)
    redis.call('PEXPIREAT', lease_key, expires)
    local out = {'renew', now, mode}
    for _, v in ipairs(redis.call('HGETALL', lease_key)) do out[#out + 1] = v end
    return out
  end
  local out = {'held', now, mode}
  for _, v in ipairs(redis.call('HGETALL', lease_key)) do out[#out + 1] = v end
  return out
end

local reserved = redis.call('HMGET', tenure_key, 'reserved_for', 'reserved_until')
if reserved[1] and reserved[1] ~= holder_id and (tonumber(reserved[2]) or 0) > now then
  return {'held', now, mode, 'holder_id', reserved[1], 'holder_host', '', 'instance_id', 'reserved',
    'term', tostring(stored_term or 0), 'lease_expires_at', reserved[2], 'reserved', '1'}
end

local term = math.max(tonumber(stored_term) or 0, highest_seen or 0) + 1
local previous = redis.call('HGET', tenure_key, 'holder_id')
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

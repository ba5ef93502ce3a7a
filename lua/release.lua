-- release.lua: give the lease up, only by its current holder (and only for its term, if given).
--
-- Holder matches      -> lease hash deleted, lease_released announced; code "released".
--                        With a handover target, the lease is reserved for that node for one
--                        TTL (only it can acquire meanwhile) and a pending handover request is
--                        consumed; the event names the target as "handoff_to".
-- Anyone else / none  -> nothing changes; code "not_holder" with the current hash (may be empty).
--
-- KEYS[1] lease hash      KEYS[2] history stream (capped)
-- KEYS[3] tenure hash     KEYS[4] handover request string
-- ARGV[1] holder id       ARGV[2] instance id      ARGV[3] term ("" = any term of this holder)
-- ARGV[4] lease name      ARGV[5] events channel   ARGV[6] history max length
-- ARGV[7] handover target node id ("" = none)      ARGV[8] reservation length in ms
-- Returns {code, now_ms, field1, value1, ...} or {"wrongtype", key} / {"corrupt", key, field}.
local lease_key, history_key, tenure_key, request_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local holder_id, instance_id, want_term = ARGV[1], ARGV[2], ARGV[3]
local lease_name, channel, history_maxlen = ARGV[4], ARGV[5], tonumber(ARGV[6])
local handoff_to, reserve_ms = ARGV[7], tonumber(ARGV[8])

local expected = {[lease_key] = 'hash', [history_key] = 'stream', [tenure_key] = 'hash',
  [request_key] = 'string'}
for key, want in pairs(expected) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= want then return {'wrongtype', key} end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cur = redis.call('HMGET', lease_key, 'holder_id', 'instance_id', 'term')
if cur[1] and not tonumber(cur[3]) then return {'corrupt', lease_key, 'term'} end
if cur[1] ~= holder_id or cur[2] ~= instance_id or (want_term ~= '' and cur[3] ~= want_term) then
  local out = {'not_holder', now}
  for _, v in ipairs(redis.call('HGETALL', lease_key)) do out[#out + 1] = v end
  return out
end

redis.call('DEL', lease_key)
local fields = {type = 'lease_released', lease = lease_name, holder_id = holder_id,
  term = tonumber(cur[3]), at = now}
if handoff_to ~= '' then
  redis.call('HSET', tenure_key, 'reserved_for', handoff_to, 'reserved_until', now + reserve_ms)
  redis.call('DEL', request_key)
  fields['handoff_to'] = handoff_to
end
local event = cjson.encode(fields)
redis.call('XADD', history_key, 'MAXLEN', '~', history_maxlen, '*', 'event', event)
redis.call('PUBLISH', channel, event)
return {'released', now}

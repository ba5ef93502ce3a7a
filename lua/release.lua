-- release.lua: give the lease up, only by its current holder (and only for its term, if given).
--
-- Holder matches      -> lease hash deleted, lease_released announced; code "released".
--                        With a handover target that its controller record says is alive
--                        and competing for this lease (status alive, lease field this lease,
--                        "*" (a many-lease node) or absent, last heartbeat younger than three
--                        of its heartbeat intervals: the rule of request_handoff.lua), the
--                        lease is reserved for that node for ARGV[8] ms (only it can acquire
--                        meanwhile) and the event names it as "handoff_to". A dead or unknown target gets no
--                        reservation: the event has no handoff_to, so every standby wakes,
--                        and the reply says why. Either way a pending handover request is
--                        consumed.
-- Anyone else / none  -> nothing changes; code "not_holder" with the current hash (may be empty).
--
-- KEYS[1] lease hash      KEYS[2] history stream (capped)
-- KEYS[3] tenure hash     KEYS[4] handover request string
-- KEYS[5] the handover target's controller hash (a placeholder key, never written, when
--         ARGV[7] is ""); only read
-- ARGV[1] holder id       ARGV[2] instance id      ARGV[3] term ("" = any term of this holder)
-- ARGV[4] lease name      ARGV[5] events channel   ARGV[6] history max length
-- ARGV[7] handover target node id ("" = none)      ARGV[8] reservation length in ms
-- Returns {"released", now_ms, reserved_for or "", why the handover was refused or ""}
--       | {"not_holder", now_ms, field1, value1, ...}
--       | error COORDINATOR_WRONGTYPE <key> | COORDINATOR_CORRUPT <key> <field>.
local lease_key, history_key, tenure_key, request_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local target_key = KEYS[5]
local holder_id, instance_id, want_term = ARGV[1], ARGV[2], ARGV[3]
local lease_name, channel, history_maxlen = ARGV[4], ARGV[5], tonumber(ARGV[6])
local handoff_to, reserve_ms = ARGV[7], tonumber(ARGV[8])

-- a stored term: decimal digits below 2^53 (exact as a Lua number), else nil
local function term_of(s)
  if type(s) ~= 'string' or #s > 16 or not s:match('^%d+$') then return nil end
  local n = tonumber(s)
  if n >= 9007199254740992 then return nil end
  return n
end

local expected = {[lease_key] = 'hash', [history_key] = 'stream', [tenure_key] = 'hash',
  [request_key] = 'string', [target_key] = 'hash'}
for key, want in pairs(expected) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= want then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. key) end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cur = redis.call('HMGET', lease_key, 'holder_id', 'instance_id', 'term')
local term = term_of(cur[3])
if (cur[1] or cur[2] or cur[3]) and not term then return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' term') end
if cur[1] ~= holder_id or cur[2] ~= instance_id or (want_term ~= '' and term ~= tonumber(want_term)) then
  local out = {'not_holder', now}
  for _, v in ipairs(redis.call('HGETALL', lease_key)) do out[#out + 1] = v end
  return out
end

redis.call('DEL', lease_key)
local fields = {type = 'lease_released', lease = lease_name, holder_id = holder_id, at = now}
local reserved_for, refused = '', ''
if handoff_to ~= '' then
  local c = redis.call('HMGET', target_key, 'status', 'last_heartbeat_at', 'heartbeat_interval_ms',
    'lease')
  if not c[1] then
    refused = 'unknown node'
  elseif c[4] and c[4] ~= lease_name and c[4] ~= '*' then
    refused = 'competes for lease ' .. c[4] .. ', not ' .. lease_name
  elseif c[1] ~= 'alive' then
    refused = 'status is ' .. c[1]
  elseif now - (tonumber(c[2]) or 0) >= 3 * (tonumber(c[3]) or 0) then
    refused = 'heartbeat is stale'
  else
    reserved_for = handoff_to
    redis.call('HSET', tenure_key, 'reserved_for', handoff_to, 'reserved_until', now + reserve_ms)
    fields['handoff_to'] = handoff_to
  end
  redis.call('DEL', request_key)
end
-- cjson writes numbers with 14 significant digits: the term goes in as its exact text
local event = '{"term":' .. string.format('%.0f', term) .. ',' .. string.sub(cjson.encode(fields), 2)
redis.call('XADD', history_key, 'MAXLEN', '~', history_maxlen, '*', 'event', event)
redis.call('PUBLISH', channel, event)
return {'released', now, reserved_for, refused}

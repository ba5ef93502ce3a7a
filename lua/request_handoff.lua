-- request_handoff.lua: ask the current leader to hand the lease over to a given node.
--
-- Refused unless the target's controller record says it is alive, competes for this lease
-- (its `lease` field is this lease or "*", a many-lease node's; records of daemons too old to
-- write one are taken at their word) and its last heartbeat is younger than three of its
-- heartbeat intervals. The request is a string with a TTL that the leader consumes when it
-- hands over (release.lua); it is announced as handoff_requested.
--
-- KEYS[1] handover request string   KEYS[2] the target's controller hash
-- KEYS[3] lease hash                KEYS[4] history stream (capped)
-- ARGV[1] target node id   ARGV[2] request ttl in ms   ARGV[3] events channel
-- ARGV[4] history max length   ARGV[5] lease name
-- Returns {"requested", now_ms} | {"already_leader", now_ms} | {"no_leader", now_ms}
--       | {"not_alive", now_ms, reason} | error COORDINATOR_WRONGTYPE <key>.
local request_key, controller_key, lease_key, history_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local target, ttl_ms, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local history_maxlen, lease_name = tonumber(ARGV[4]), ARGV[5]

for key, want in pairs({[request_key] = 'string', [controller_key] = 'hash', [lease_key] = 'hash',
    [history_key] = 'stream'}) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= want then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. key) end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local c = redis.call('HMGET', controller_key, 'status', 'last_heartbeat_at', 'heartbeat_interval_ms',
  'lease')
if not c[1] then return {'not_alive', now, 'unknown node'} end
-- a node of another lease (one namespace can hold several) would never take this one
if c[4] and c[4] ~= lease_name and c[4] ~= '*' then
  return {'not_alive', now, 'competes for lease ' .. c[4] .. ', not ' .. lease_name}
end
if c[1] ~= 'alive' then return {'not_alive', now, 'status is ' .. c[1]} end
if now - (tonumber(c[2]) or 0) >= 3 * (tonumber(c[3]) or 0) then
  return {'not_alive', now, 'heartbeat is stale'}
end
local holder = redis.call('HGET', lease_key, 'holder_id')
if not holder then return {'no_leader', now} end
if holder == target then return {'already_leader', now} end

redis.call('SET', request_key, target, 'PX', ttl_ms)
local event = cjson.encode({type = 'handoff_requested', lease = lease_name, to = target,
  from = holder, at = now})
redis.call('XADD', history_key, 'MAXLEN', '~', history_maxlen, '*', 'event', event)
redis.call('PUBLISH', channel, event)
return {'requested', now}

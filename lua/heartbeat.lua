-- heartbeat.lua: record one controller's heartbeat in one round trip.
--
-- The sorted set is scored by the Redis server's time in ms, so "who is alive" is a range
-- query. Entries older than the retention window are pruned by score range (no scan), and
-- the per-controller hash expires after the same window. Preferred controllers are also kept
-- in a small sorted set of their own, so a leader finds them without reading everyone.
-- steady_since is when this controller's current unbroken run of "alive" heartbeats began
-- (a new process, a gap of over two intervals or another status starts a new run): it is
-- what keeps a flapping preferred node from taking the leadership back.
--
-- KEYS[1] heartbeats sorted set      KEYS[2] this controller's hash
-- KEYS[3] preferred controllers sorted set
-- ARGV[1] node id     ARGV[2] host       ARGV[3] role        ARGV[4] priority
-- ARGV[5] status      ARGV[6] version    ARGV[7] instance id ARGV[8] metadata json
-- ARGV[9] retention in ms  ARGV[10] heartbeat interval in ms (readers judge liveness by it)
-- ARGV[11] "1" if this controller is preferred, else "0"
-- Returns {now_ms, started_at_ms} | {"wrongtype", key}.
local zset_key, controller_key, preferred_key = KEYS[1], KEYS[2], KEYS[3]
local node_id, host, role, priority = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local status, version, instance_id, metadata_json = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local retention_ms, interval_ms, preferred = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]

for key, want in pairs({[zset_key] = 'zset', [controller_key] = 'hash', [preferred_key] = 'zset'}) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= want then return {'wrongtype', key} end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local known = redis.call('HMGET', controller_key, 'instance_id', 'started_at', 'last_heartbeat_at',
  'status', 'steady_since')
local same_process = known[1] == instance_id
local started_at = known[2]
if not same_process or not tonumber(started_at) then started_at = now end
local steady_since = known[5]
if status ~= 'alive' then
  steady_since = ''
elseif not same_process or known[4] ~= 'alive' or not tonumber(steady_since)
    or now - (tonumber(known[3]) or 0) > 2 * interval_ms then
  steady_since = now
end

redis.call('HSET', controller_key, 'node_id', node_id, 'host', host, 'role', role,
  'priority', priority, 'status', status, 'version', version, 'instance_id', instance_id,
  'started_at', started_at, 'last_heartbeat_at', now, 'metadata_json', metadata_json,
  'heartbeat_interval_ms', interval_ms, 'preferred', preferred, 'steady_since', steady_since)
redis.call('PEXPIRE', controller_key, retention_ms)
redis.call('ZADD', zset_key, now, node_id)
redis.call('ZREMRANGEBYSCORE', zset_key, '-inf', '(' .. (now - retention_ms))
if preferred == '1' then
  redis.call('ZADD', preferred_key, now, node_id)
else
  redis.call('ZREM', preferred_key, node_id)
end
redis.call('ZREMRANGEBYSCORE', preferred_key, '-inf', '(' .. (now - retention_ms))
return {now, tonumber(started_at)}

-- heartbeat.lua: record one controller's heartbeat in one round trip.
--
-- The sorted set is scored by the Redis server's time in ms, so "who is alive" is a range
-- query. Entries older than the retention window are pruned by score range (no scan) on
-- about one heartbeat in sixteen, and the per-controller hash expires after the same window.
-- Preferred controllers are also kept in a small sorted set of their own, so a leader finds
-- them without reading everyone. steady_since is when this controller's current unbroken run
-- of "alive" heartbeats began (a new process, a gap of over two intervals or another status
-- starts a new run): it keeps a flapping preferred node from taking the leadership back.
-- A controller's fixed fields are written when its process first beats; later beats (the hot
-- path) write only what moves.
--
-- KEYS[1] heartbeats sorted set      KEYS[2] this controller's hash
-- KEYS[3] preferred controllers sorted set
-- ARGV[1] node id     ARGV[2] host       ARGV[3] role        ARGV[4] priority
-- ARGV[5] status      ARGV[6] version    ARGV[7] instance id ARGV[8] metadata json
-- ARGV[9] retention in ms  ARGV[10] heartbeat interval in ms (readers judge liveness by it)
-- ARGV[11] "1" if this controller is preferred, else "0"
-- ARGV[12] the lease this controller competes for (a handover goes only to such a node)
-- Returns {now_ms, started_at_ms} | error COORDINATOR_WRONGTYPE <key>.
local zset_key, controller_key, preferred_key = KEYS[1], KEYS[2], KEYS[3]
local node_id, host, role, priority = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local status, version, instance_id, metadata_json = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local retention_ms, interval_ms, preferred = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
local lease_name = ARGV[12]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local known = redis.pcall('HMGET', controller_key, 'instance_id', 'started_at', 'last_heartbeat_at',
  'status', 'steady_since', 'preferred')
if known.err then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. controller_key) end
local same_process = known[1] == instance_id and tonumber(known[2]) ~= nil
-- both sorted sets are checked before the first write (reads that fail on another type),
-- so a foreign key fails the whole beat with nothing applied, on every branch
for _, key in ipairs({zset_key, preferred_key}) do
  local score = redis.pcall('ZSCORE', key, node_id)
  if type(score) == 'table' and score.err then
    return redis.error_reply('COORDINATOR_WRONGTYPE ' .. key)
  end
end

local steady_since = known[5]
if status ~= 'alive' then
  steady_since = ''
elseif not same_process or known[4] ~= 'alive' or not tonumber(steady_since)
    or now - (tonumber(known[3]) or 0) > 2 * interval_ms then
  steady_since = now
end

local started_at = known[2]
if same_process then
  redis.call('HSET', controller_key, 'status', status, 'last_heartbeat_at', now,
    'steady_since', steady_since, 'metadata_json', metadata_json)
else
  started_at = now
  redis.call('HSET', controller_key, 'node_id', node_id, 'host', host, 'role', role,
    'priority', priority, 'status', status, 'version', version, 'instance_id', instance_id,
    'started_at', started_at, 'last_heartbeat_at', now, 'metadata_json', metadata_json,
    'heartbeat_interval_ms', interval_ms, 'preferred', preferred, 'steady_since', steady_since,
    'lease', lease_name)
end
redis.call('PEXPIRE', controller_key, retention_ms)

redis.call('ZADD', zset_key, now, node_id)
if preferred == '1' or known[6] == '1' or not same_process then
  if preferred == '1' then
    redis.call('ZADD', preferred_key, now, node_id)
  else
    redis.call('ZREM', preferred_key, node_id)
  end
end
if now % 16 == 0 then
  redis.call('ZREMRANGEBYSCORE', zset_key, '-inf', '(' .. (now - retention_ms))
  redis.call('ZREMRANGEBYSCORE', preferred_key, '-inf', '(' .. (now - retention_ms))
end
return {now, tonumber(started_at)}

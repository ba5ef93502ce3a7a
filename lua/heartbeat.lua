-- heartbeat.lua: record one controller's heartbeat in one round trip.
--
-- The sorted set is scored by the Redis server's time in ms, so "who is alive" is a range
-- query. Entries older than the retention window are pruned by score range (no scan), and
-- the per-controller hash expires after the same window.
--
-- KEYS[1] heartbeats sorted set      KEYS[2] this controller's hash
-- ARGV[1] node id     ARGV[2] host       ARGV[3] role        ARGV[4] priority
-- ARGV[5] status      ARGV[6] version    ARGV[7] instance id ARGV[8] metadata json
-- ARGV[9] retention in ms  ARGV[10] heartbeat interval in ms (readers judge liveness by it)
-- Returns {now_ms, started_at_ms} | {"wrongtype", key}.
local zset_key, controller_key = KEYS[1], KEYS[2]
local node_id, host, role, priority = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local status, version, instance_id, metadata_json = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local retention_ms, interval_ms = tonumber(ARGV[9]), ARGV[10]

local kind = redis.call('TYPE', zset_key)['ok']
if kind ~= 'none' and kind ~= 'zset' then return {'wrongtype', zset_key} end
kind = redis.call('TYPE', controller_key)['ok']
if kind ~= 'none' and kind ~= 'hash' then return {'wrongtype', controller_key} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local known = redis.call('HMGET', controller_key, 'instance_id', 'started_at')
local started_at = known[2]
if known[1] ~= instance_id or not tonumber(started_at) then started_at = now end

redis.call('HSET', controller_key, 'node_id', node_id, 'host', host, 'role', role,
  'priority', priority, 'status', status, 'version', version, 'instance_id', instance_id,
  'started_at', started_at, 'last_heartbeat_at', now, 'metadata_json', metadata_json,
  'heartbeat_interval_ms', interval_ms)
redis.call('PEXPIRE', controller_key, retention_ms)
redis.call('ZADD', zset_key, now, node_id)
redis.call('ZREMRANGEBYSCORE', zset_key, '-inf', '(' .. (now - retention_ms))
return {now, tonumber(started_at)}

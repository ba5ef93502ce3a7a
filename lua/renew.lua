-- renew.lua: the hot path of a leader: extend the lease this process holds, nothing else.
--
-- Used by a holder that believes it holds the lease; anything unexpected answers "lost" and
-- the caller falls back to acquire.lua (acquire-or-renew), which handles every other case
-- (and validates what it finds). The caller passes the lost tenure's term as its highest
-- seen, so a lease it gets back has a larger term than the one its old writes carry.
--
-- KEYS[1] lease hash      KEYS[2] automation mode string (rides along, read only)
-- ARGV[1] holder id       ARGV[2] instance id          ARGV[3] ttl in ms
-- Returns {"renew", now_ms, automation_mode, term, lease_expires_at} | {"lost", now_ms}.
local lease_key, mode_key = KEYS[1], KEYS[2]
local holder_id, instance_id, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cur = redis.pcall('HMGET', lease_key, 'holder_id', 'instance_id', 'term')
if cur.err or cur[1] ~= holder_id or cur[2] ~= instance_id or not tonumber(cur[3]) then
  return {'lost', now}
end
local mode = redis.pcall('GET', mode_key)
if type(mode) ~= 'string' then mode = '' end

local expires = now + ttl_ms
redis.call('HSET', lease_key, 'lease_expires_at', expires, 'renewed_at', now)
redis.call('PEXPIREAT', lease_key, expires)
return {'renew', now, mode, cur[3], expires}

-- renew.lua: the hot path of a leader: extend the lease this process holds, nothing else.
--
-- Used by a holder that believes it holds the lease; a lease that is not this process's
-- answers "lost" and the caller falls back to acquire.lua (acquire-or-renew), which handles
-- every other case. A lease of this process with a field it could not have written (a term
-- that is not decimal digits below 2^53, times that are not numbers) is reported, never
-- renewed over. The check-and-extend is renew_lease.lua's, shared with renew_many.lua.
-- include: renew_lease
--
-- KEYS[1] lease hash      KEYS[2] automation mode string (rides along, read only)
-- ARGV[1] holder id       ARGV[2] instance id          ARGV[3] ttl in ms
-- Returns {"renew", now_ms, automation_mode, term, lease_expires_at} | {"lost", now_ms}
--       | error COORDINATOR_CORRUPT <key> <field>. The term is an integer reply, as the times
-- are (it was checked to be below 2^53, so the Lua number holds it exactly): the caller's
-- client parses it as a number, with no string to convert on every renewal.
local lease_key, mode_key = KEYS[1], KEYS[2]
local holder_id, instance_id, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local code, term, expires = renew_lease(lease_key, holder_id, instance_id, ttl_ms, now)
if code == 'lost' then
  return {'lost', now}
elseif code == 'corrupt' then
  return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' ' .. term)
end
local mode = redis.pcall('GET', mode_key)
if type(mode) ~= 'string' then mode = '' end
return {'renew', now, mode, tonumber(term), expires}

-- renew_many.lua: one node's whole renewal in one round trip: every lease of a list it holds,
-- and optionally its heartbeat.
--
-- Each lease gets exactly renew.lua's check-and-extend (renew_lease.lua, shared): a lease
-- that is not this holder's and process's answers "lost", one with a field this holder could
-- not have written answers "corrupt" with the field, and neither stops the renewal of the
-- rest. With ARGV[4] = "1" the heartbeat is written as heartbeat.lua writes it
-- (write_heartbeat.lua, shared); a key of another type there is reported as "wrongtype" and
-- the leases are renewed all the same (as the two separate calls of a single-lease daemon).
-- All of it on one Redis clock reading. Every key is passed in KEYS.
-- include: renew_lease
-- include: write_heartbeat
--
-- KEYS[1] automation mode string (read only)     KEYS[2] heartbeats sorted set
-- KEYS[3] this controller's hash                 KEYS[4] preferred controllers sorted set
-- KEYS[5..] the lease hashes to renew
-- ARGV[1] holder id   ARGV[2] instance id   ARGV[3] ttl in ms   ARGV[4] "1": beat, "0": not
-- ARGV[5..18] heartbeat.lua's ARGV[1..14] (ignored unless ARGV[4] is "1")
-- Returns {now_ms, automation_mode, beat, beat_value, then per lease in KEYS order
--          code, value, value}: beat "none" | "beat", started_at | "wrongtype", key;
--          code "renew", term, lease_expires_at | "lost", "", "" | "corrupt", field, "".
local mode_key, zset_key, controller_key, preferred_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local holder_id, instance_id, ttl_ms, beat = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local mode = redis.pcall('GET', mode_key)
if type(mode) ~= 'string' then mode = '' end
local reply = {now, mode, 'none', ''}
if beat == '1' then
  local started_at, foreign_key = write_heartbeat(zset_key, controller_key, preferred_key,
    {(unpack or table.unpack)(ARGV, 5, 18)}, now)
  if started_at then
    reply[3], reply[4] = 'beat', started_at
  else
    reply[3], reply[4] = 'wrongtype', foreign_key
  end
end
local n = #reply
for i = 5, #KEYS do
  local code, a, b = renew_lease(KEYS[i], holder_id, instance_id, ttl_ms, now)
  reply[n + 1], reply[n + 2], reply[n + 3] = code, a or '', b or ''
  n = n + 3
end
return reply

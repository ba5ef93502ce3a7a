-- acquire.lua: acquire-or-renew the leader lease in one atomic step.
--
-- Caller holds it    -> expiry and renewed_at move forward, term unchanged, nothing
--                       published; code "renew". (A leader's hot path is renew.lua; this is
--                       its fallback and a restarted caller's first call.) Unless the caller
--                       released that tenure (its term is at or below ARGV[13]): a release
--                       lost in a failover leaves it on the promoted replica, and resuming
--                       it would give back a term below one granted since (a handover's,
--                       on the old master); it is replaced by a new grant, as if free.
-- No live lease      -> the caller becomes holder with a new term (below), announces
--                       leader_changed (PUBLISH + history stream); code "acquire".
-- Another holds it   -> nothing changes; code "held" with the holder's record.
-- Reserved for another (a handover in progress, see release.lua) -> code "held" with a
--                       stand-in record: holder_id = the node it is reserved for,
--                       instance_id "reserved", lease_expires_at = when the reservation ends.
--                       Unless the caller names that node in ARGV[11] and its controller
--                       record (KEYS[5]) says it is dead (status not alive, or its last
--                       heartbeat three of its intervals old, or no record) or that it
--                       competes for another lease ("*", a many-lease node, competes for
--                       every lease): then the
--                       reservation is dropped and the lease granted.
--
-- The new term is max(stored term + 1, highest term the caller has seen + 1, TIME in µs): it
-- looks like Unix microseconds (1.8e15; 2^53 is reached in 2255) and is larger than any
-- term granted before even when this
-- Redis lost the last writes (a failover, a restart without persistence), provided the
-- servers' clocks agree within the time that took. A term that would reach 2^53 (no longer
-- exact as a Lua number) is refused; a stored term that is not decimal digits below 2^53 is
-- reported as corrupt, never used or overwritten.
--
-- The epoch (a failover or restart that lost writes, while the stored chain ran ahead of TIME
-- so the TIME floor no longer helps): the tenure hash records in granted_by the identity of
-- the server that granted its term, "<run_id>:<master_replid>" from INFO server/replication
-- (a restart changes both, a promotion changes master_replid; measured on 6.2.14 and 7.0.15,
-- from AOF and RDB). The rule, exactly:
--   identity = "<run_id>:<master_replid>" when INFO answers both inside the script, else ""
--   jump     = a stored term exists and identity ~= "" and stored >= TIME in µs and
--              granted_by is another history: missing, another run_id, or this run_id
--              with another master_replid while master_replid2 is set (promoted since; a
--              new replid with master_replid2 all zeros is a backlog made from scratch for
--              a first replica: the same server, no jump)
--   term     = max(stored + (jump and EPOCH_STEP or 1), highest seen + 1, TIME in µs)
--   and granted_by := identity with the term.
-- Only a chain at or ahead of the clock jumps: behind it, the TIME floor is already past
-- every term the lost window granted (no script runs in under a µs), and a jump would only
-- put the new master's terms 10^8 µs ahead of an old master that, not yet demoted, still
-- grants by the clock (terms going back across the split, and the TIME floor lost for a
-- later empty restart).
-- EPOCH_STEP = 10^8 covers 10^8 grants lost in one window and leaves (2^53 - 1.8e15) / 10^8
-- = 7.2e7 jumps. Where INFO is refused (fakeredis; an ACL without +info) the identity is ""
-- and no grant jumps: the protection then rests on the TIME floor alone.
-- All times are the Redis server's clock (TIME), integer milliseconds; the hash expires exactly at
-- lease_expires_at (PEXPIREAT), so the reported expiry is the real one. Host, metadata and
-- preferred holder are written when a tenure starts; a renewal only moves the times.
--
-- KEYS[1] lease hash (expires with the TTL)
-- KEYS[2] tenure hash (never expires: term = highest term granted, holder_id = last holder,
--         granted_by = the identity of the server that granted term ("" unknown),
--         reserved_for / reserved_until while a handover reservation stands)
-- KEYS[3] history stream (capped)
-- KEYS[4] automation mode string (only read: it rides along so the daemon needs no extra call)
-- KEYS[5] controller hash of the node named in ARGV[11], or a placeholder key that is never
--         written when ARGV[11] is "" (the key count stays fixed); only read
-- ARGV[1] holder id          ARGV[2] holder host      ARGV[3] instance id (one per process)
-- ARGV[4] ttl in ms          ARGV[5] highest term the caller has seen (0 .. 2^53 - 2)
-- ARGV[6] metadata json      ARGV[7] preferred holder id ("" for none)
-- ARGV[8] lease name         ARGV[9] events channel   ARGV[10] history max length
-- ARGV[11] the node a reservation was last reported for ("" for none)
-- ARGV[12] the run_id of the master the Sentinels name now, read from that server itself
--          ("" for no check: no Sentinel configured; "-": none could be established)
-- ARGV[13] the highest term of this instance the caller has released ("" or 0 for none): a
--          lease of the caller's own instance at or below it is an ended tenure, never renewed
-- The Sentinel check (a grant, and a renewal through this script; "held" and the
-- reservation's stand-in are never refused; renew.lua, the leader's hot path, is never
-- checked): with ARGV[12] set, a tenure is granted or renewed here only by the server whose
-- INFO server run_id is ARGV[12]. The daemon sends its first renewal after a followed
-- switch here, not to renew.lua, so a connection still on the old master cannot hand the
-- tenure the failover lost back to a leader that just left it. Sentinel demotes a reachable old
-- master at its next INFO refresh, seconds after the switch; until then the old master is
-- writable and would grant a term the new master's grants never see (coordinator/
-- sentinel_master.py). Refused: the error reply COORDINATOR_NOT_MASTER <own run_id or ?>
-- <ARGV[12]>, touching nothing.
-- Returns (automation_mode is "" when unset)
--   {"renew", now_ms, automation_mode, term, acquired_at, lease_expires_at}
--   {"acquire" | "held", now_ms, automation_mode, field1, value1, ...} with the lease hash
--   or an error reply, touching nothing: COORDINATOR_WRONGTYPE <key> | COORDINATOR_CORRUPT <key>
--   <field> (COORDINATOR_CORRUPT <tenure key> term also when no term below 2^53 is left;
--   COORDINATOR_CORRUPT <tenure key> granted_by for one that is not "" or <word>:<word>).
-- Errors are error replies, never in band, so no user data can look like one (see scripts.py).
local lease_key, tenure_key, history_key, mode_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local target_key = KEYS[5]
local holder_id, holder_host, instance_id = ARGV[1], ARGV[2], ARGV[3]
local ttl_ms, highest_seen = tonumber(ARGV[4]), tonumber(ARGV[5]) or 0
local metadata_json, preferred = ARGV[6], ARGV[7]
local lease_name, channel, history_maxlen = ARGV[8], ARGV[9], tonumber(ARGV[10])
local target_id = ARGV[11]
local sentinel_run_id = ARGV[12] or ''
local released_through = tonumber(ARGV[13]) or 0
local TERM_LIMIT = 9007199254740992  -- 2^53
local EPOCH_STEP = 100000000  -- 10^8 (coordinator/lease.py EPOCH_STEP)

-- a stored term: decimal digits below 2^53 (exact as a Lua number), else nil
local function term_of(s)
  if type(s) ~= 'string' or #s > 16 or not s:match('^%d+$') then return nil end
  local n = tonumber(s)
  if n >= TERM_LIMIT then return nil end
  return n
end

-- a stored identity: "" or <word>:<word> (run id and replication id are 40 hex digits)
local function identity_ok(s)
  return s == '' or (#s <= 100 and s:match('^%w+:%w+$') ~= nil)
end

-- this server's identity ("" where INFO is refused or lacks a field, see the header), and
-- whether its replication id has a past (master_replid2 not all zeros: it was promoted)
local function server_identity()
  local server, replication = redis.pcall('INFO', 'server'), redis.pcall('INFO', 'replication')
  if type(server) ~= 'string' or type(replication) ~= 'string' then return '', false end
  local run_id = server:match('run_id:(%w+)')
  local replid = replication:match('master_replid:(%w+)')
  if not run_id or not replid then return '', false end
  local replid2 = replication:match('master_replid2:(%w+)') or ''
  return run_id .. ':' .. replid, replid2:match('^0*$') == nil
end

-- whether a grant by `stored` (an identity) may have been lost on the way here: another
-- process (a promoted replica, a restart) or this process promoted since. The same process
-- with a new replication id and no past one only made its backlog from scratch (its first
-- replica): nothing was lost, and jumping there would put two servers on one jumped term.
local function another_history(stored, identity, promoted)
  if not stored or stored == '' then return true end
  if stored == identity then return false end
  local stored_run = stored:match('^(%w+):')
  local run = identity:match('^(%w+):')
  return stored_run ~= run or promoted
end

-- the Sentinel check (header): the error reply when ARGV[12] names another server, else nil
local refusal = false
local function not_named()
  if sentinel_run_id == '' then return nil end
  if refusal == false then
    local server = redis.pcall('INFO', 'server')
    local own = type(server) == 'string' and server:match('run_id:(%w+)') or ''
    refusal = own ~= sentinel_run_id and redis.error_reply('COORDINATOR_NOT_MASTER '
      .. (own ~= '' and own or '?') .. ' ' .. sentinel_run_id) or nil
  end
  return refusal
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- the term floor in microseconds: no script runs in under one, so grants, however fast,
-- never run ahead of the clock (a ms floor did: 1,000 grants in a second put terms a second
-- ahead, and a Redis restarted empty granted them again)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local expires = now + ttl_ms

-- pcall: a key of another type is reported, not a script error
local cur = redis.pcall('HMGET', lease_key, 'holder_id', 'instance_id', 'term', 'lease_expires_at',
  'acquired_at', 'renewed_at')
if cur.err then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. lease_key) end
local mode = redis.pcall('GET', mode_key)
if type(mode) == 'table' then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. mode_key) end
mode = mode or ''

if cur[1] or cur[2] or cur[3] then
  if not cur[1] or cur[1] == '' then return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' holder_id') end
  if not cur[2] or cur[2] == '' then return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' instance_id') end
  if not term_of(cur[3]) then return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' term') end
  if not tonumber(cur[4]) then return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' lease_expires_at') end
  if cur[6] and not tonumber(cur[6]) then
    return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' renewed_at')
  end
  local ours = cur[1] == holder_id and cur[2] == instance_id
  if ours and term_of(cur[3]) > released_through then
    if not_named() then return not_named() end
    redis.call('HSET', lease_key, 'lease_expires_at', expires, 'renewed_at', now)
    redis.call('PEXPIREAT', lease_key, expires)
    return {'renew', now, mode, cur[3], cur[5] or '0', expires}
  end
  if not ours then
    local out = {'held', now, mode}
    for _, v in ipairs(redis.call('HGETALL', lease_key)) do out[#out + 1] = v end
    return out
  end
  -- a tenure this caller released (header): granted anew below, over it
elseif redis.call('EXISTS', lease_key) == 1 then
  return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' holder_id')  -- a hash, but none of the lease's fields
end

-- no live lease: the cold path checks everything it is about to write
local kind = redis.call('TYPE', tenure_key)['ok']
if kind ~= 'none' and kind ~= 'hash' then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. tenure_key) end
kind = redis.call('TYPE', history_key)['ok']
if kind ~= 'none' and kind ~= 'stream' then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. history_key) end
local tenure = redis.call('HMGET', tenure_key, 'term', 'holder_id', 'reserved_for', 'reserved_until',
  'granted_by')
local stored = 0
if tenure[1] then
  stored = term_of(tenure[1])
  if not stored then return redis.error_reply('COORDINATOR_CORRUPT ' .. tenure_key .. ' term') end
end
if tenure[5] and not identity_ok(tenure[5]) then
  return redis.error_reply('COORDINATOR_CORRUPT ' .. tenure_key .. ' granted_by')
end

local reserved_for = tenure[3]
if reserved_for and reserved_for ~= holder_id and (tonumber(tenure[4]) or 0) > now then
  local target_dead = false
  if reserved_for == target_id then
    -- the same liveness rule as request_handoff.lua and release.lua
    local c = redis.pcall('HMGET', target_key, 'status', 'last_heartbeat_at', 'heartbeat_interval_ms',
      'lease')
    if c.err then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. target_key) end
    -- a target that competes for another lease will never take this one: as good as dead
    target_dead = c[1] ~= 'alive' or now - (tonumber(c[2]) or 0) >= 3 * (tonumber(c[3]) or 0)
      or (c[4] ~= false and c[4] ~= lease_name and c[4] ~= '*')
  end
  if not target_dead then
    return {'held', now, mode, 'holder_id', reserved_for, 'holder_host', '', 'instance_id', 'reserved',
      'term', tenure[1] or '0', 'lease_expires_at', tenure[4], 'reserved', '1'}
  end
end

if not_named() then return not_named() end

local identity, promoted = server_identity()
local step = 1
if tenure[1] and identity ~= '' and another_history(tenure[5], identity, promoted)
    and stored >= now_us then
  step = EPOCH_STEP
end
local term = math.max(stored + step, highest_seen + 1, now_us)
if term >= TERM_LIMIT then return redis.error_reply('COORDINATOR_CORRUPT ' .. tenure_key .. ' term') end
local term_text = string.format('%.0f', term)  -- tostring would round to 14 digits
local previous = tenure[2]
redis.call('HSET', lease_key, 'holder_id', holder_id, 'holder_host', holder_host,
  'instance_id', instance_id, 'term', term_text, 'acquired_at', now, 'renewed_at', now,
  'lease_expires_at', expires, 'preferred_holder_id', preferred, 'metadata_json', metadata_json)
redis.call('PEXPIREAT', lease_key, expires)
redis.call('HSET', tenure_key, 'term', term_text, 'holder_id', holder_id, 'granted_by', identity)
redis.call('HDEL', tenure_key, 'reserved_for', 'reserved_until')

-- cjson writes numbers with 14 significant digits: the term goes in as its exact text
local event = '{"term":' .. term_text .. ',' .. string.sub(cjson.encode({type = 'leader_changed',
  lease = lease_name, holder_id = holder_id, holder_host = holder_host,
  previous_holder_id = previous or cjson.null, at = now}), 2)
redis.call('XADD', history_key, 'MAXLEN', '~', history_maxlen, '*', 'event', event)
redis.call('PUBLISH', channel, event)

local out = {'acquire', now, mode}
for _, v in ipairs(redis.call('HGETALL', lease_key)) do out[#out + 1] = v end
return out

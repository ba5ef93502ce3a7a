-- fence.lua: write only while the caller's tenure is the live lease.
--
-- A paused or partitioned old leader carries an old tenure; its write is refused here,
-- atomically with the check, so it can never land after a newer tenure began. A tenure is
-- its term AND its holder's id and instance id: after a failover that lost writes, or with
-- terms lifted beyond the clock, two tenures could carry one term, and the term alone
-- would let the stale one write.
--
-- KEYS[1] lease hash      KEYS[2] the key to write
-- ARGV[1] term            ARGV[2] value (set)         ARGV[3] expiry in ms (set; "" or "0" = none)
-- ARGV[4] holder id       ARGV[5] instance id (the writer's process)
-- ARGV[6] op: "" or "set" (KEYS[2] a string) | "del" (any type) | "hset" (a hash)
--             | "incrby" (a string holding an integer)
-- ARGV[7..] the op's arguments: hset field, value, field, value...; incrby the amount
-- Returns {"ok", now_ms, term, op_reply} | {"stale", now_ms, current_term or ""}
--   (op_reply: 1 for set, keys removed for del, fields added for hset, the new value for incrby)
--       | error COORDINATOR_WRONGTYPE <key> | COORDINATOR_CORRUPT <key> <field>
--       | error COORDINATOR_BADARG <what> (an op or argument the client never sends).
local lease_key, target_key = KEYS[1], KEYS[2]
local term, value, px = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]) or 0
local holder_id, instance_id = ARGV[4], ARGV[5]
local op = ARGV[6] or ''
if op == '' then op = 'set' end

local want = ({set = 'string', incrby = 'string', hset = 'hash', del = 'any'})[op]
if not want then return redis.error_reply('COORDINATOR_BADARG op') end

local kind = redis.call('TYPE', lease_key)['ok']
if kind ~= 'none' and kind ~= 'hash' then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. lease_key) end
kind = redis.call('TYPE', target_key)['ok']
if want ~= 'any' and kind ~= 'none' and kind ~= want then
  return redis.error_reply('COORDINATOR_WRONGTYPE ' .. target_key)
end
local amount
if op == 'incrby' then
  amount = ARGV[7]
  if not amount or not amount:match('^-?%d+$') or #amount > 16 then
    return redis.error_reply('COORDINATOR_BADARG amount')
  end
  if kind == 'string' then
    local held = redis.call('GET', target_key)
    if #held > 19 or not held:match('^-?%d+$') then
      return redis.error_reply('COORDINATOR_CORRUPT ' .. target_key .. ' value')
    end
  end
elseif op == 'hset' and (#ARGV < 8 or (#ARGV - 6) % 2 ~= 0) then
  return redis.error_reply('COORDINATOR_BADARG fields')
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cur = redis.call('HMGET', lease_key, 'term', 'holder_id', 'instance_id')
local current = cur[1]
if current then
  -- a stored term: decimal digits below 2^53 (exact as a Lua number)
  if #current > 16 or not current:match('^%d+$') or tonumber(current) >= 9007199254740992 then
    return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' term')
  end
end
if not current or tonumber(current) ~= term or cur[2] ~= holder_id or cur[3] ~= instance_id then
  return {'stale', now, current or ''}
end

local out = 1
if op == 'set' then
  if px > 0 then
    redis.call('SET', target_key, value, 'PX', px)
  else
    redis.call('SET', target_key, value)
  end
elseif op == 'del' then
  out = redis.call('DEL', target_key)
elseif op == 'hset' then
  out = redis.call('HSET', target_key, unpack(ARGV, 7))
else
  out = redis.call('INCRBY', target_key, amount)
end
return {'ok', now, current, out}

-- fence_eval.lua: run the caller's own Lua snippet only while the caller's tenure is the
-- live lease (a template: Lease.fenced_eval puts the snippet in place of the marked line).
--
-- The same check as fence.lua (term AND holder id AND instance id of the live lease),
-- atomically with the snippet. The snippet sees its own KEYS and ARGV (the lease key and
-- the tenure's three arguments are taken off), may return any value, and must check its
-- keys itself: an error it raises after a write leaves that write applied (Redis scripts
-- do not roll back).
--
-- KEYS[1] lease hash      KEYS[2..] the snippet's KEYS
-- ARGV[1] term            ARGV[2] holder id     ARGV[3] instance id     ARGV[4..] the snippet's ARGV
-- Returns {"ok", now_ms, term, snippet_reply} | {"stale", now_ms, current_term or ""}
--       | error COORDINATOR_WRONGTYPE <lease key> | COORDINATOR_CORRUPT <lease key> term.
local lease_key = KEYS[1]
local term, holder_id, instance_id = tonumber(ARGV[1]), ARGV[2], ARGV[3]

local kind = redis.call('TYPE', lease_key)['ok']
if kind ~= 'none' and kind ~= 'hash' then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. lease_key) end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cur = redis.call('HMGET', lease_key, 'term', 'holder_id', 'instance_id')
local current = cur[1]
if current then
  if #current > 16 or not current:match('^%d+$') or tonumber(current) >= 9007199254740992 then
    return redis.error_reply('COORDINATOR_CORRUPT ' .. lease_key .. ' term')
  end
end
if not current or tonumber(current) ~= term or cur[2] ~= holder_id or cur[3] ~= instance_id then
  return {'stale', now, current or ''}
end

local snippet_keys, snippet_args = {}, {}
for i = 2, #KEYS do snippet_keys[i - 1] = KEYS[i] end
for i = 4, #ARGV do snippet_args[i - 3] = ARGV[i] end
local function snippet(KEYS, ARGV)
--[[USER SNIPPET]]
end
return {'ok', now, current, snippet(snippet_keys, snippet_args)}

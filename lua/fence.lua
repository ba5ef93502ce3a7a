-- fence.lua: write a value only while the given term is the term of the live lease.
--
-- A paused or partitioned old leader carries an old term; its write is refused here,
-- atomically with the check, so it can never land after a newer tenure began.
--
-- KEYS[1] lease hash      KEYS[2] the key to write (a string key)
-- ARGV[1] term            ARGV[2] value            ARGV[3] expiry in ms ("" or "0" = none)
-- Returns {"ok", now_ms, term} | {"stale", now_ms, current_term or ""}
--       | {"wrongtype", key} | {"corrupt", key, field}.
local lease_key, target_key = KEYS[1], KEYS[2]
local term, value, px = ARGV[1], ARGV[2], tonumber(ARGV[3]) or 0

local kind = redis.call('TYPE', lease_key)['ok']
if kind ~= 'none' and kind ~= 'hash' then return {'wrongtype', lease_key} end
kind = redis.call('TYPE', target_key)['ok']
if kind ~= 'none' and kind ~= 'string' then return {'wrongtype', target_key} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local current = redis.call('HGET', lease_key, 'term')
if current and not tonumber(current) then return {'corrupt', lease_key, 'term'} end
if not current or tonumber(current) ~= tonumber(term) then return {'stale', now, current or ''} end

if px > 0 then
  redis.call('SET', target_key, value, 'PX', px)
else
  redis.call('SET', target_key, value)
end
return {'ok', now, current}

-- set_mode.lua: set the namespace's automation mode (running | draining | paused) atomically,
-- or one lease's own (many leases: the stricter of the two applies to that lease).
--
-- A change is announced as automation_mode_changed (PUBLISH + history stream), with the
-- lease's name for a lease's mode; setting the mode it already has changes and announces nothing.
--
-- KEYS[1] automation mode string (the namespace's, or one lease's)   KEYS[2] history stream
-- ARGV[1] new mode    ARGV[2] events channel    ARGV[3] history max length
-- ARGV[4] the lease's name for a lease's own mode, "" (or absent) for the namespace's
-- Returns {"changed" | "unchanged", now_ms, previous_mode} | error COORDINATOR_WRONGTYPE <key>
--       | error COORDINATOR_CORRUPT <key> mode.
local mode_key, history_key = KEYS[1], KEYS[2]
local mode, channel, history_maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lease = ARGV[4] or ''
local known = {running = true, draining = true, paused = true}

local kind = redis.call('TYPE', mode_key)['ok']
if kind ~= 'none' and kind ~= 'string' then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. mode_key) end
kind = redis.call('TYPE', history_key)['ok']
if kind ~= 'none' and kind ~= 'stream' then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. history_key) end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local previous = redis.call('GET', mode_key) or 'running'
if not known[previous] then return redis.error_reply('COORDINATOR_CORRUPT ' .. mode_key .. ' mode') end
if previous == mode then return {'unchanged', now, previous} end

redis.call('SET', mode_key, mode)
local fields = {type = 'automation_mode_changed', mode = mode, previous_mode = previous, at = now}
if lease ~= '' then fields.lease = lease end
local event = cjson.encode(fields)
redis.call('XADD', history_key, 'MAXLEN', '~', history_maxlen, '*', 'event', event)
redis.call('PUBLISH', channel, event)
return {'changed', now, previous}

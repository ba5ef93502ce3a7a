-- set_mode.lua: set the namespace's automation mode (running | draining | paused) atomically.
--
-- A change is announced as automation_mode_changed (PUBLISH + history stream);
-- setting the mode it already has changes and announces nothing.
--
-- KEYS[1] automation mode string     KEYS[2] history stream (capped)
-- ARGV[1] new mode    ARGV[2] events channel    ARGV[3] history max length
-- Returns {"changed" | "unchanged", now_ms, previous_mode} | error COORDINATOR_WRONGTYPE <key>
--       | error COORDINATOR_CORRUPT <key> mode.
local mode_key, history_key = KEYS[1], KEYS[2]
local mode, channel, history_maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3])
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
local event = cjson.encode({type = 'automation_mode_changed', mode = mode,
  previous_mode = previous, at = now})
redis.call('XADD', history_key, 'MAXLEN', '~', history_maxlen, '*', 'event', event)
redis.call('PUBLISH', channel, event)
return {'changed', now, previous}

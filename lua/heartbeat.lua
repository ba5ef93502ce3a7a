-- heartbeat.lua: record one controller's heartbeat in one round trip.
--
-- The sorted set is scored by the Redis server's time in ms, so "who is alive" is a range
-- query. Entries older than the retention window are pruned by score range (no scan) on
-- about one heartbeat in sixteen, and the per-controller hash expires after the same window:
-- at least the retention and at most retention + P after its last beat, P = min(16 heartbeat
-- intervals, the retention) (its expiry is moved once per period P, not on every beat).
-- Preferred controllers are also kept in a small sorted set of their own, so a leader finds
-- them without reading everyone. steady_since is when this controller's current unbroken run
-- of "alive" heartbeats began (a new process, a gap of over two intervals or another status
-- starts a new run): it keeps a flapping preferred node from taking the leadership back.
-- A controller's fixed fields are written when its process first beats; later beats (the hot
-- path) write only what moves: TIME, HMGET, the preferred set's type check (ZSCORE), ZADD,
-- HSET. The work is write_heartbeat.lua's, shared with renew_many.lua.
-- include: write_heartbeat
--
-- KEYS[1] heartbeats sorted set      KEYS[2] this controller's hash
-- KEYS[3] preferred controllers sorted set
-- ARGV[1] node id     ARGV[2] host       ARGV[3] role        ARGV[4] priority
-- ARGV[5] status      ARGV[6] version    ARGV[7] instance id ARGV[8] metadata json
-- ARGV[9] retention in ms  ARGV[10] heartbeat interval in ms (readers judge liveness by it)
-- ARGV[11] "1" if this controller is preferred, else "0"
-- ARGV[12] the lease this controller competes for (a handover goes only to such a node);
--          "*" for a many-lease node: it competes for every lease its selector allows
-- ARGV[13] a many-lease node's capacity ("" for a single-lease node: neither it nor ARGV[14]
--          is written, so a single-lease record is unchanged)
-- ARGV[14] a many-lease node's selector, the setting's text ("" = every lease)
-- Returns {now_ms, started_at_ms} | error COORDINATOR_WRONGTYPE <key>.
local zset_key, controller_key, preferred_key = KEYS[1], KEYS[2], KEYS[3]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local started_at, foreign_key = write_heartbeat(zset_key, controller_key, preferred_key, ARGV, now)
if not started_at then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. foreign_key) end
return {now, started_at}

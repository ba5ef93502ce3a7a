-- write_heartbeat.lua: a fragment, not a script: heartbeat.lua's work, shared with
-- renew_many.lua (where the heartbeat rides along the renewal). The loader puts it in front of
-- every script with the line "-- include: write_heartbeat" (scripts.script_source).
--
-- write_heartbeat(zset_key, controller_key, preferred_key, a, now), where a holds
-- heartbeat.lua's ARGV[1..14] in the same order: see heartbeat.lua for what it writes.
-- Returns started_at_ms | nil, the key of another type (nothing was written then).
local function write_heartbeat(zset_key, controller_key, preferred_key, a, now)
  local node_id, host, role, priority = a[1], a[2], a[3], a[4]
  local status, version, instance_id, metadata_json = a[5], a[6], a[7], a[8]
  local retention_ms, interval_ms, preferred = tonumber(a[9]), tonumber(a[10]), a[11]
  local lease_name, capacity, selector = a[12], a[13] or '', a[14] or ''

  local known = redis.pcall('HMGET', controller_key, 'instance_id', 'started_at',
    'last_heartbeat_at', 'status', 'steady_since', 'preferred')
  if known.err then return nil, controller_key end
  local same_process = known[1] == instance_id and tonumber(known[2]) ~= nil
  -- a foreign key fails the whole beat with nothing applied, on every branch: the preferred
  -- set is checked by a read before the first write, and the heartbeats set by its own ZADD,
  -- which is the first write (a write that fails on another type changes nothing)
  local score = redis.pcall('ZSCORE', preferred_key, node_id)
  if type(score) == 'table' and score.err then return nil, preferred_key end
  local added = redis.pcall('ZADD', zset_key, now, node_id)
  if type(added) == 'table' and added.err then return nil, zset_key end

  local last_beat = tonumber(known[3])
  local steady_since = known[5]
  if status ~= 'alive' then
    steady_since = ''
  elseif not same_process or known[4] ~= 'alive' or not tonumber(steady_since)
      or now - (last_beat or 0) > 2 * interval_ms then
    steady_since = now
  end

  -- the hash's expiry moves on once per period of P = min(16 intervals, retention) ms, on
  -- the first beat of the period, to the period's end + retention: a record lives at least
  -- the retention and at most retention + P after its last beat
  local period = math.max(1, math.min(16 * interval_ms, retention_ms))
  local window = math.floor(now / period)
  local started_at = known[2]
  if same_process then
    redis.call('HSET', controller_key, 'status', status, 'last_heartbeat_at', now,
      'steady_since', steady_since, 'metadata_json', metadata_json)
  else
    started_at = now
    local fields = {'node_id', node_id, 'host', host, 'role', role,
      'priority', priority, 'status', status, 'version', version, 'instance_id', instance_id,
      'started_at', started_at, 'last_heartbeat_at', now, 'metadata_json', metadata_json,
      'heartbeat_interval_ms', interval_ms, 'preferred', preferred, 'steady_since', steady_since,
      'lease', lease_name}
    -- a many-lease node's weight and selector; a single-lease record stays as it always was
    if capacity ~= '' then
      local n = #fields
      fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] =
        'capacity', capacity, 'selector', selector
    end
    redis.call('HSET', controller_key, (unpack or table.unpack)(fields))
  end
  if not same_process or not last_beat or math.floor(last_beat / period) ~= window then
    redis.call('PEXPIREAT', controller_key, (window + 1) * period + retention_ms)
  end

  if preferred == '1' or known[6] == '1' or not same_process then
    if preferred == '1' then
      redis.call('ZADD', preferred_key, now, node_id)
    else
      redis.call('ZREM', preferred_key, node_id)
    end
  end
  if now % 16 == 0 then
    redis.call('ZREMRANGEBYSCORE', zset_key, '-inf', '(' .. (now - retention_ms))
    redis.call('ZREMRANGEBYSCORE', preferred_key, '-inf', '(' .. (now - retention_ms))
  end
  return tonumber(started_at)
end

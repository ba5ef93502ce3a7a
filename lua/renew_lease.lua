-- renew_lease.lua: a fragment, not a script: the per-lease check-and-extend of renew.lua,
-- shared with renew_many.lua so the two cannot drift apart. The loader puts it in front of
-- every script with the line "-- include: renew_lease" (scripts.script_source).
--
-- renew_lease(lease_key, holder_id, instance_id, ttl_ms, now): a lease that is not this
-- holder's and process's (expired, taken, a foreign type) answers "lost" and nothing
-- changes; a field this holder could not have written (a term that is not decimal digits
-- below 2^53, times that are not numbers) answers "corrupt" and nothing changes; otherwise
-- the lease is extended to now + ttl_ms. The fields checked are read in the same HMGET.
-- Returns "renew", term, expires_at | "lost" | "corrupt", field.
local function renew_lease(lease_key, holder_id, instance_id, ttl_ms, now)
  local cur = redis.pcall('HMGET', lease_key, 'holder_id', 'instance_id', 'term',
    'lease_expires_at', 'renewed_at')
  if cur.err or cur[1] ~= holder_id or cur[2] ~= instance_id then
    return 'lost'
  end
  local term = cur[3]
  if type(term) ~= 'string' or #term > 16 or not term:match('^%d+$')
      or tonumber(term) >= 9007199254740992 then
    return 'corrupt', 'term'
  end
  if not tonumber(cur[4]) then return 'corrupt', 'lease_expires_at' end
  if cur[5] and not tonumber(cur[5]) then return 'corrupt', 'renewed_at' end
  local expires = now + ttl_ms
  redis.call('HSET', lease_key, 'lease_expires_at', expires, 'renewed_at', now)
  redis.call('PEXPIREAT', lease_key, expires)
  return 'renew', term, expires
end

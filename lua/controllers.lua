-- controllers.lua: read many controllers' records in one call (for status with many nodes).
--
-- One script instead of one pipelined command per controller: the client packs one command,
-- Redis answers one flat array. All keys share the namespace's hash tag (one Cluster slot).
--
-- KEYS[1..n] controller hashes
-- ARGV[1..m] the fields to read from each
-- Returns a flat array of n * m values (false where a field or the hash is missing), or
--         error COORDINATOR_WRONGTYPE <key> if a key is not a hash.
local out = {}
for _, key in ipairs(KEYS) do
  local values = redis.pcall('HMGET', key, unpack(ARGV))
  if values.err then return redis.error_reply('COORDINATOR_WRONGTYPE ' .. key) end
  for i = 1, #ARGV do out[#out + 1] = values[i] end
end
return out

-- Token bucket, checked and consumed atomically.
-- KEYS[1]  bucket hash (fields: tokens, ts)
-- ARGV[1]  refill rate, tokens per second
-- ARGV[2]  capacity (burst)
-- ARGV[3]  cost of this request
-- ARGV[4]  optional: the time in microseconds, for tests that replay a sequence; the proxy
--          never sends it and Redis's clock is used
-- Returns { allowed (0/1), remaining (integer), reset_seconds (string), retry_after_seconds (string) }
-- reset: seconds until the bucket is full again; retry_after: seconds until `cost` tokens exist.
-- Fractions are returned as strings because Redis truncates Lua numbers to integers.
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

-- Redis's clock, so every proxy instance agrees on the time.
local now = tonumber(ARGV[4])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end

local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(capacity, tokens + elapsed * rate / 1000000)

local allowed = 0
local retry_after = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_after = (cost - tokens) / rate
end

redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.0f', now))
-- Once the bucket would be full it carries no information: let it expire.
local full_in_ms = math.ceil((capacity - tokens) / rate * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], full_in_ms)

local reset = (capacity - tokens) / rate
return { allowed, math.floor(tokens), string.format('%.6f', reset), string.format('%.6f', retry_after) }

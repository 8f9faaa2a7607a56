-- Every rate-limit algorithm, several policies per call, decided and consumed atomically.
-- The protocol (KEYS/ARGV layout, reply shape, stored layout) is documented in
-- include/ratelimit_proxy/limit/policy_script.hpp; src/limit/memory_store.cpp is the in-memory
-- twin and must do the same arithmetic in the same order (the equivalence tests compare the
-- two bit for bit).
--
-- Numbers: Redis truncates Lua numbers to integers in replies, so fractions go out as strings.
-- Every quantity a decision compares is first rounded to a 6-decimal grid (r6): this is the
-- only "epsilon" (it turns 0.9999999999 tokens into 1). State is stored as fixed-precision
-- strings (times and counts %.0f, tat %.6f, tb tokens %.12f so that rounding does not drift
-- across requests), and the C++ twin rounds identically (snprintf + strtod, as Lua does).

local function r6(x)
  return tonumber(string.format('%.6f', x))
end
local function f6(x)
  return string.format('%.6f', x)
end
local function f0(x)
  return string.format('%.0f', x)
end

-- Reads hash fields; a key of another type (the policy changed algorithm) reads as empty
-- and is deleted before it is written.
local function hmget(key, ...)
  local r = redis.pcall('HMGET', key, ...)
  if type(r) == 'table' and r.err then
    return {}, true
  end
  return r, false
end

-- Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, UTC). Floor
-- division makes the era right for dates before 1970 too.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- Start and end (Unix seconds) of the UTC calendar month containing s.
local function month_bounds(s)
  local y, m = civil_from_days(math.floor(s / 86400))
  local start = days_from_civil(y, m, 1) * 86400
  if m == 12 then
    y, m = y + 1, 1
  else
    m = m + 1
  end
  return start, days_from_civil(y, m, 1) * 86400
end

local now = tonumber(ARGV[1])
if now == nil then
  -- Redis's clock, so every proxy instance agrees on the time.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local n = tonumber(ARGV[2])

-- Token bucket. Stored: hash { tokens, ts }.
local function tb(it)
  local rate = it.limit / it.window
  local cap = it.burst > 0 and it.burst or it.limit
  local s, wrong = hmget(it.key, 'tokens', 'ts')
  it.wrong = wrong
  local tokens, ts = tonumber(s[1]), tonumber(s[2])
  if tokens == nil or ts == nil then
    tokens = cap
    ts = now
  end
  local elapsed = now - ts
  if elapsed < 0 then elapsed = 0 end
  -- The level is kept with 12 decimals (no drift worth the name); decisions and replies see
  -- it on the 6-decimal grid.
  local level = math.min(cap, tokens + elapsed * rate / 1000000)
  tokens = r6(level)
  it.allowed = tokens >= it.cost
  local after_level = level
  if it.allowed then
    after_level = level - it.cost
    if after_level < 0 then after_level = 0 end  -- level was a hair under cost
  end
  local after = r6(after_level)
  it.after_remaining = math.floor(after)
  it.after_reset = (cap - after) / rate
  it.before_remaining = math.floor(tokens)
  it.before_reset = (cap - tokens) / rate
  if it.allowed then
    it.retry = 0
  elseif it.cost > cap then
    it.retry = it.window  -- never possible; tell the client to come back much later
  else
    it.retry = (it.cost - tokens) / rate
  end
  it.write = function()
    redis.call('HSET', it.key, 'tokens', string.format('%.12f', after_level), 'ts', f0(now))
    -- Once the bucket would be full it carries no information: let it expire.
    redis.call('PEXPIRE', it.key, math.ceil((cap - after) / rate * 1000) + 1000)
  end
end

-- GCRA: the token bucket with one stored number, the theoretical arrival time (µs).
-- Tokens available = cap - (tat0 - now) / T, rounded to the same grid as tb, so that tb and
-- gcra decide alike.
local function gcra(it)
  local rate = it.limit / it.window
  local cap = it.burst > 0 and it.burst or it.limit
  local t = 1000000 / rate
  local r = redis.pcall('GET', it.key)
  local tat = nil
  if type(r) == 'table' and r.err then
    it.wrong = true
  else
    tat = tonumber(r)
  end
  if tat == nil then tat = now end
  local tat0 = math.max(tat, now)
  local new_tat = tat0 + it.cost * t
  local avail = r6(cap - (tat0 - now) / t)
  it.allowed = avail >= it.cost
  it.after_remaining = math.floor(r6(cap - (new_tat - now) / t))
  it.after_reset = (new_tat - now) / 1000000
  it.before_remaining = math.floor(avail)
  it.before_reset = (tat0 - now) / 1000000
  if it.allowed then
    it.retry = 0
  elseif it.cost > cap then
    it.retry = it.window
  else
    it.retry = (tat0 + it.cost * t - cap * t - now) / 1000000
  end
  it.write = function()
    local stored = r6(new_tat)
    redis.call('SET', it.key, f6(stored), 'PX', math.ceil((stored - now) / 1000) + 1000)
  end
end

-- Sliding window, weighted two-window counter: constant memory, approximate. The previous
-- window's count is weighted by how much of it still overlaps the sliding window, which
-- assumes its requests were spread evenly; with bursty traffic the estimate can be off by up
-- to the previous window's count in either direction. Stored: hash { w, c, p }.
local function sw(it)
  local ww = it.window * 1000000
  local cur = math.floor(now / ww) * ww
  local s, wrong = hmget(it.key, 'w', 'c', 'p')
  it.wrong = wrong
  local w, c, p = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
  if w ~= cur then
    if w == cur - ww then
      p = c
    else
      p = 0
    end
    c = 0
  end
  local weight = (ww - (now - cur)) / ww
  local est = r6(p * weight + c)
  it.allowed = r6(est + it.cost) <= it.limit
  local c_after = c
  local est_after = est
  if it.allowed then
    c_after = c + it.cost
    est_after = r6(p * weight + c_after)
  end
  local function reset_of(cc)
    if cc > 0 then return (cur + 2 * ww - now) / 1000000 end
    if p > 0 then return (cur + ww - now) / 1000000 end
    return 0
  end
  it.after_remaining = math.floor(r6(it.limit - est_after))
  it.after_reset = reset_of(c_after)
  it.before_remaining = math.floor(r6(it.limit - est))
  it.before_reset = reset_of(c)
  if it.allowed then
    it.retry = 0
  elseif it.cost > it.limit then
    it.retry = it.window
  else
    local at
    local room = it.limit - c - it.cost
    if room >= 0 and p > 0 then
      -- Within this window: p's weight falls until p * weight <= room.
      at = cur + ww - room * ww / p
    elseif c > 0 then
      -- Next window: c becomes the previous count; wait until c * weight' <= limit - cost.
      at = cur + 2 * ww - (it.limit - it.cost) * ww / c
    else
      at = cur + ww
    end
    it.retry = (at - now) / 1000000
    if it.retry < 0 then it.retry = 0 end
  end
  it.write = function()
    redis.call('HSET', it.key, 'w', f0(cur), 'c', f0(c_after), 'p', f0(p))
    redis.call('PEXPIRE', it.key, math.ceil(2 * ww / 1000) + 1000)
  end
end

-- Fixed window aligned to the Unix epoch (a "day" resets at midnight UTC), or with flag "m"
-- a UTC calendar month. Stored: hash { w, c }.
local function fw(it)
  local ws, we
  if it.month then
    local s, e = month_bounds(math.floor(now / 1000000))
    ws, we = s * 1000000, e * 1000000
  else
    local ww = it.window * 1000000
    ws = math.floor(now / ww) * ww
    we = ws + ww
  end
  local s, wrong = hmget(it.key, 'w', 'c')
  it.wrong = wrong
  local w, c = tonumber(s[1]), tonumber(s[2]) or 0
  if w ~= ws then c = 0 end
  it.allowed = c + it.cost <= it.limit
  local c_after = c
  if it.allowed then c_after = c + it.cost end
  it.after_remaining = math.floor(r6(it.limit - c_after))
  it.after_reset = (we - now) / 1000000
  it.before_remaining = math.floor(r6(it.limit - c))
  it.before_reset = it.after_reset
  -- Denied: the window's end, also when cost > limit (then it never fits; the client learns
  -- that from remaining, and asking again next window costs nothing).
  it.retry = it.allowed and 0 or (we - now) / 1000000
  it.write = function()
    redis.call('HSET', it.key, 'w', f0(ws), 'c', f0(c_after))
    redis.call('PEXPIRE', it.key, math.ceil((we - now) / 1000) + 1000)
  end
end

local algorithms = { tb = tb, gcra = gcra, sw = sw, fw = fw }

-- First decide every item without writing anything.
local items = {}
local allowed_all = true
for i = 1, n do
  local a = 3 + 6 * (i - 1)
  local flags = ARGV[a + 5] or ''
  local it = {
    key = KEYS[i],
    limit = tonumber(ARGV[a + 1]),
    window = tonumber(ARGV[a + 2]),
    burst = tonumber(ARGV[a + 3]) or 0,
    cost = tonumber(ARGV[a + 4]),
    shadow = string.find(flags, 's', 1, true) ~= nil,
    month = string.find(flags, 'm', 1, true) ~= nil,
  }
  algorithms[ARGV[a]](it)
  if not it.allowed and not it.shadow then allowed_all = false end
  items[i] = it
end

-- Then consume from every item that allows, or from none at all.
local out = { allowed_all and 1 or 0 }
for i = 1, n do
  local it = items[i]
  local consumed = allowed_all and it.allowed
  if consumed then
    if it.wrong then redis.call('DEL', it.key) end
    it.write()
  end
  out[#out + 1] = it.allowed and 1 or 0
  out[#out + 1] = math.max(0, consumed and it.after_remaining or it.before_remaining)
  out[#out + 1] = f6(consumed and it.after_reset or it.before_reset)
  out[#out + 1] = f6(it.retry)
end
return out

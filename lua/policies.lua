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
-- across requests), and the C++ twin rounds identically (printing and reading back, as Lua does).
--
-- Cost: this runs once per proxied request, and Redis runs the whole chunk on every EVALSHA
-- (every function defined in it is a new closure each time). So it allocates little: the
-- algorithms are branches of one loop, not functions, there is one helper (`fixed`) and no
-- table per item. And it avoids what costs most after the Redis commands themselves,
-- printf and C function calls:
-- - r6(v) is written out inline as `if v % 1 ~= 0 then v = fmt('%.6f', v) * 1 end`: a
--   whole number is on the grid already (printing it and parsing it back gives v itself,
--   -0 included).
-- - `s * 1` converts a string exactly as tonumber(s) does (both are Lua's luaO_str2d), only
--   without the call. ARGV numbers are converted so (a malformed one is an error instead of
--   nil); values read back from Redis keep tonumber, so that anything else reads as absent.
-- - math.min/max are written out as `a < b and a or b`, which is what they compute.
-- Metered fixed windows (flag 'h') read the whole hash (their holds) with HGETALL; request
-- items keep their HMGET and pay nothing for metering.

local tonumber, fmt, floor, ceil = tonumber, string.format, math.floor, math.ceil
local call, KEYS, ARGV = redis.call, KEYS, ARGV

-- string.format(pattern, x), pattern being '%.0f', '%.6f' or '%.12f'. A whole number that a
-- C long holds prints the same through %d followed by the zeros (whole_pattern), which is
-- much cheaper; -0 (%d drops its sign) and fractions cannot take that path.
local function fixed(x, pattern, whole_pattern)
  if x % 1 == 0 and x > -2^53 and x < 2^53 and (x ~= 0 or 1 / x > 0) then
    return fmt(whole_pattern, x)
  end
  return fmt(pattern, x)
end

local now = ARGV[1] ~= '' and tonumber(ARGV[1]) or nil  -- "" (production) skips tonumber
local now_s  -- now as stored ('%.0f'), made when first needed
if now == nil then
  -- Redis's clock, so every proxy instance agrees on the time.
  local t = call('TIME')
  local sec, us = t[1], t[2]
  now = sec * 1000000 + us
  -- '%.0f' of now is the seconds followed by the microseconds on 6 digits (while now is
  -- exact, until the year 2255).
  if sec ~= '0' and now < 2^53 then
    if #us < 6 then us = string.rep('0', 6 - #us) .. us end
    now_s = sec .. us
  end
end
local n = ARGV[2] * 1
-- Metered items ('h') hold their cost under the request's hold id, ARGV[3 + 6n], for
-- ARGV[4 + 6n] seconds; read when the first one needs them.
local hold_field, hold_expiry

-- Item i's reply is out[4i-2 .. 4i+1]: allowed, remaining, reset, retry. The first pass puts
-- there the reply as if nothing were consumed (reset still a number); the second overwrites
-- remaining and reset of the items it consumes from, and formats. The retry of an item that
-- allows is 0: until then, its slot holds instead what consuming from the item needs.
-- Sized for one item, the common case.
local out = n == 1 and { 1, 0, 0, 0, 0 } or { 1 }
local allowed_all = true

-- First decide every item without writing anything.
for i = 1, n do
  local a = 6 * i - 3
  local algo, key = ARGV[a], KEYS[i]
  local limit, window, cost = ARGV[a + 1] * 1, ARGV[a + 2] * 1, ARGV[a + 4] * 1
  local flags = ARGV[a + 5] or ''
  local shadow, month, metered, week, life = false, false, false, false, false
  if flags == 's' then
    shadow = true
  elseif flags ~= '' then
    local find = string.find
    shadow = find(flags, 's', 1, true) ~= nil
    month = find(flags, 'm', 1, true) ~= nil
    metered = find(flags, 'h', 1, true) ~= nil
    week = find(flags, 'w', 1, true) ~= nil
    life = find(flags, 'l', 1, true) ~= nil
  end
  local allowed, remaining, reset, retry
  local held_out = false  -- metered fw: refused only because of in-flight holds
  local consume  -- when allowed: what consuming needs, { key holds another type, ... }

  if algo == 'tb' then
    -- Token bucket. Stored: hash { tokens, ts }.
    local rate = limit / window
    local burst = ARGV[a + 3] * 1
    local cap = burst > 0 and burst or limit
    -- A key of another type (the policy changed algorithm) reads as empty and is deleted
    -- before it is written.
    local s = redis.pcall('HMGET', key, 'tokens', 'ts')
    local wrong = s.err ~= nil
    local tokens, ts
    if not wrong then tokens, ts = tonumber(s[1]), tonumber(s[2]) end
    if tokens == nil or ts == nil then
      tokens = cap
      ts = now
    end
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end
    -- The level is kept with 12 decimals (no drift worth the name); decisions and replies see
    -- it on the 6-decimal grid.
    local level = tokens + elapsed * rate / 1000000
    level = level < cap and level or cap  -- math.min(cap, level)
    tokens = level
    if tokens % 1 ~= 0 then tokens = fmt('%.6f', tokens) * 1 end  -- r6
    allowed = tokens >= cost
    remaining = floor(tokens)
    reset = (cap - tokens) / rate
    if allowed then
      local after_level = level - cost
      if after_level < 0 then after_level = 0 end  -- level was a hair under cost
      consume = { wrong, after_level, cap, rate }
    elseif cost > cap then
      retry = window  -- never possible; tell the client to come back much later
    else
      retry = (cost - tokens) / rate
    end

  elseif algo == 'gcra' then
    -- GCRA: the token bucket with one stored number, the theoretical arrival time (µs).
    -- Tokens available = cap - (tat0 - now) / T, rounded to the same grid as tb, so that tb
    -- and gcra decide alike.
    local rate = limit / window
    local burst = ARGV[a + 3] * 1
    local cap = burst > 0 and burst or limit
    local t = 1000000 / rate
    local r = redis.pcall('GET', key)
    local wrong = type(r) == 'table' and r.err ~= nil
    local tat = nil
    if not wrong then tat = tonumber(r) end
    if tat == nil then tat = now end
    local tat0 = now > tat and now or tat  -- math.max(tat, now)
    local avail = cap - (tat0 - now) / t
    if avail % 1 ~= 0 then avail = fmt('%.6f', avail) * 1 end  -- r6
    allowed = avail >= cost
    remaining = floor(avail)
    reset = (tat0 - now) / 1000000
    if allowed then
      consume = { wrong, tat0 + cost * t, cap, t }  -- the new tat
    elseif cost > cap then
      retry = window
    else
      retry = (tat0 + cost * t - cap * t - now) / 1000000
    end

  elseif algo == 'sw' then
    -- Sliding window, weighted two-window counter: constant memory, approximate. The
    -- previous window's count is weighted by how much of it still overlaps the sliding
    -- window, which assumes its requests were spread evenly; with bursty traffic the estimate
    -- can be off by up to the previous window's count in either direction.
    -- Stored: hash { w, c, p }.
    local ww = window * 1000000
    local cur = floor(now / ww) * ww
    local s = redis.pcall('HMGET', key, 'w', 'c', 'p')
    local wrong = s.err ~= nil
    local w, c, p = nil, 0, 0
    if not wrong then w, c, p = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0 end
    if w ~= cur then
      if w == cur - ww then
        p = c
      else
        p = 0
      end
      c = 0
    end
    local weight = (ww - (now - cur)) / ww
    local est = p * weight + c
    if est % 1 ~= 0 then est = fmt('%.6f', est) * 1 end  -- r6
    local want = est + cost
    if want % 1 ~= 0 then want = fmt('%.6f', want) * 1 end  -- r6
    allowed = want <= limit
    local left = limit - est
    if left % 1 ~= 0 then left = fmt('%.6f', left) * 1 end  -- r6
    remaining = floor(left)
    -- Reset: when the counts in the window reach 0.
    if c > 0 then
      reset = (cur + 2 * ww - now) / 1000000
    elseif p > 0 then
      reset = (cur + ww - now) / 1000000
    else
      reset = 0
    end
    if allowed then
      consume = { wrong, cur, c + cost, p, weight, ww, limit }
    elseif cost > limit then
      retry = window
    else
      local at
      local room = limit - c - cost
      if room >= 0 and p > 0 then
        -- Within this window: p's weight falls until p * weight <= room.
        at = cur + ww - room * ww / p
      elseif c > 0 then
        -- Next window: c becomes the previous count; wait until c * weight' <= limit - cost.
        at = cur + 2 * ww - (limit - cost) * ww / c
      else
        at = cur + ww
      end
      retry = (at - now) / 1000000
      if retry < 0 then retry = 0 end
    end

  elseif algo == 'fw' then
    -- Fixed window aligned to the Unix epoch (a "day" resets at midnight UTC), or with flag
    -- "m" a UTC calendar month. Stored: hash { w, c }.
    local ws, we
    if month then
      -- Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, UTC).
      -- Floor division makes the era right for dates before 1970 too.
      local function days_from_civil(y, m, d)
        if m <= 2 then y = y - 1 end
        local era = floor(y / 400)
        local yoe = y - era * 400
        local mp = m > 2 and m - 3 or m + 9
        local doy = floor((153 * mp + 2) / 5) + d - 1
        local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
        return era * 146097 + doe - 719468
      end
      -- civil_from_days of today (UTC).
      local z = floor(floor(now / 1000000) / 86400) + 719468
      local era = floor(z / 146097)
      local doe = z - era * 146097
      local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524)
                         - floor(doe / 146096)) / 365)
      local y = yoe + era * 400
      local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
      local mp = floor((5 * doy + 2) / 153)
      local m = mp < 10 and mp + 3 or mp - 9
      if m <= 2 then y = y + 1 end
      -- Start and end of this month, in µs.
      ws = days_from_civil(y, m, 1) * 86400 * 1000000
      if m == 12 then
        y, m = y + 1, 1
      else
        m = m + 1
      end
      we = days_from_civil(y, m, 1) * 86400 * 1000000
    elseif week then
      -- The UTC week from Monday 00:00; day 0 (1970-01-01) was a Thursday.
      local d = floor(floor(now / 1000000) / 86400)
      ws = (d - (d + 3) % 7) * 86400 * 1000000
      we = ws + 7 * 86400 * 1000000
    elseif life then
      ws = 0  -- one window for ever: no end (we nil), reset 0
    else
      local ww = window * 1000000
      ws = floor(now / ww) * ww
      we = ws + ww
    end
    local wrong
    local w, c = nil, 0
    local held, latest, expired = 0, 0, nil
    if metered then
      -- Also the holds "h:<id>" = "<amount> <expiry µs>"; those still live (expiry >= now)
      -- count, the others are dropped when this key is next written.
      local s = redis.pcall('HGETALL', key)
      wrong = s.err ~= nil
      if not wrong then
        local sub, find = string.sub, string.find
        for j = 1, #s, 2 do
          local f, v = s[j], s[j + 1]
          if f == 'w' then
            w = tonumber(v)
          elseif f == 'c' then
            c = tonumber(v) or 0
          elseif sub(f, 1, 2) == 'h:' then
            local sp = find(v, ' ', 1, true)
            local amount, exp
            if sp then amount, exp = tonumber(sub(v, 1, sp - 1)), tonumber(sub(v, sp + 1)) end
            if amount and exp and exp >= now then
              held = held + amount
              if exp > latest then latest = exp end
            else
              expired = expired or {}
              expired[#expired + 1] = f
            end
          end
        end
      end
    else
      local s = redis.pcall('HMGET', key, 'w', 'c')
      wrong = s.err ~= nil
      if not wrong then w, c = tonumber(s[1]), tonumber(s[2]) or 0 end
    end
    if w ~= ws then c = 0 end
    local left
    if metered then
      allowed = c + held + cost <= limit
      held_out = not allowed and c + cost <= limit
      left = limit - c - held
    else
      allowed = c + cost <= limit
      left = limit - c
    end
    if left % 1 ~= 0 then left = fmt('%.6f', left) * 1 end  -- r6
    remaining = floor(left)
    reset = we and (we - now) / 1000000 or 0  -- consuming does not change it
    if allowed then
      if metered then
        consume = { wrong, ws, c, we, limit, held, latest, expired, cost }
      else
        consume = { wrong, ws, c + cost, we, limit }
      end
    elseif held_out then
      retry = 1  -- a hold may be settled or expire any moment
    else
      -- The window's end, also when cost > limit (then it never fits; the client learns
      -- that from remaining, and asking again next window costs nothing). A lifetime
      -- window never ends: 0.
      retry = reset
    end

  elseif algo == 'cc' then
    -- Concurrency: a sorted set of leases, member = the request's lease id (the burst
    -- field), score = its expiry (µs); window is the lease time. Only live leases count,
    -- so an instance that died takes its slots along for at most the lease time. Expired
    -- ones are dropped when a lease is taken: a refusal writes nothing, as everywhere.
    now_s = now_s or fixed(now, '%.0f', '%d')
    local r = redis.pcall('ZCOUNT', key, now_s, '+inf')
    local wrong = type(r) == 'table'
    local held = wrong and 0 or r
    allowed = held + cost <= limit
    local left = limit - held
    if left % 1 ~= 0 then left = fmt('%.6f', left) * 1 end  -- r6
    remaining = floor(left)
    -- No window to reset: 1 s (Retry-After's) while no slot is free, else now.
    reset = remaining >= 1 and 0 or 1
    if allowed then
      consume = { wrong, limit - held - cost, window }
    else
      retry = 1
    end

  else
    error('unknown algorithm ' .. tostring(algo))
  end

  if not allowed and not shadow then allowed_all = false end
  out[4 * i - 2] = allowed and 1 or (held_out and 2 or 0)
  out[4 * i - 1] = remaining
  out[4 * i] = reset
  out[4 * i + 1] = consume or fmt('%.6f', retry)
end

-- Then consume from every item that allows, or from none at all, and format the reply.
if not allowed_all then out[1] = 0 end
for i = 1, n do
  if out[4 * i - 2] == 1 then
    if allowed_all then
      local e = out[4 * i + 1]  -- consume
      local key, algo = KEYS[i], ARGV[6 * i - 3]
      if e[1] then call('DEL', key) end
      if algo == 'tb' then
        local after_level, cap, rate = e[2], e[3], e[4]
        local after = after_level
        if after % 1 ~= 0 then after = fmt('%.6f', after) * 1 end  -- r6
        local reset = (cap - after) / rate
        out[4 * i - 1] = floor(after)
        out[4 * i] = reset
        now_s = now_s or fixed(now, '%.0f', '%d')
        call('HSET', key, 'tokens', fixed(after_level, '%.12f', '%d.000000000000'),
             'ts', now_s)
        -- Once the bucket would be full it carries no information: let it expire.
        call('PEXPIRE', key, ceil(reset * 1000) + 1000)
      elseif algo == 'gcra' then
        local new_tat, cap, t = e[2], e[3], e[4]
        local left = cap - (new_tat - now) / t
        if left % 1 ~= 0 then left = fmt('%.6f', left) * 1 end  -- r6
        out[4 * i - 1] = floor(left)
        out[4 * i] = (new_tat - now) / 1000000
        local stored = new_tat
        if stored % 1 ~= 0 then stored = fmt('%.6f', stored) * 1 end  -- r6
        call('SET', key, fixed(stored, '%.6f', '%d.000000'),
             'PX', ceil((stored - now) / 1000) + 1000)
      elseif algo == 'sw' then
        local cur, c_after, p, weight, ww, limit = e[2], e[3], e[4], e[5], e[6], e[7]
        local est = p * weight + c_after
        if est % 1 ~= 0 then est = fmt('%.6f', est) * 1 end  -- r6
        local left = limit - est
        if left % 1 ~= 0 then left = fmt('%.6f', left) * 1 end  -- r6
        out[4 * i - 1] = floor(left)
        if c_after > 0 then
          out[4 * i] = (cur + 2 * ww - now) / 1000000
        elseif p > 0 then
          out[4 * i] = (cur + ww - now) / 1000000
        else
          out[4 * i] = 0
        end
        call('HSET', key, 'w', fixed(cur, '%.0f', '%d'), 'c', fixed(c_after, '%.0f', '%d'),
             'p', fixed(p, '%.0f', '%d'))
        call('PEXPIRE', key, ceil(2 * ww / 1000) + 1000)
      elseif algo == 'cc' then
        local left, lease = e[2], e[3]
        if left % 1 ~= 0 then left = fmt('%.6f', left) * 1 end  -- r6
        out[4 * i - 1] = floor(left)
        out[4 * i] = out[4 * i - 1] >= 1 and 0 or 1
        call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now_s)
        call('ZADD', key, fixed(now + lease * 1000000, '%.0f', '%d'), ARGV[6 * i])
        -- Outlives every lease in it, renewed ones included (renewal sets it again).
        call('PEXPIRE', key, ceil(2 * lease * 1000) + 1000)
      elseif e[9] then
        -- Metered fw: the cost is held, not counted; settle.lua charges the actual amount.
        local ws, c, we, limit, held, latest, expired, cost = e[2], e[3], e[4], e[5], e[6],
                                                             e[7], e[8], e[9]
        local left = limit - c - held - cost
        if left % 1 ~= 0 then left = fmt('%.6f', left) * 1 end  -- r6
        out[4 * i - 1] = floor(left)
        if not hold_field then
          local h = 3 + 6 * n
          hold_field = 'h:' .. ARGV[h]
          hold_expiry = now + ARGV[h + 1] * 1000000
        end
        call('HSET', key, 'w', fixed(ws, '%.0f', '%d'), 'c', fixed(c, '%.0f', '%d'), hold_field,
             fixed(cost, '%.0f', '%d') .. ' ' .. fixed(hold_expiry, '%.0f', '%d'))
        if expired then
          -- In slices: unpack of thousands of fields (a crashed instance's holds) would
          -- overflow Lua's stack.
          for j = 1, #expired, 256 do
            call('HDEL', key, unpack(expired, j, j + 255 < #expired and j + 255 or #expired))
          end
        end
        if we then
          -- Outlives the window and every live hold.
          local last = we
          if latest > last then last = latest end
          if hold_expiry > last then last = hold_expiry end
          call('PEXPIRE', key, ceil((last - now) / 1000) + 1000)
        else
          call('PERSIST', key)
        end
      else
        local ws, c_after, we, limit = e[2], e[3], e[4], e[5]
        local left = limit - c_after
        if left % 1 ~= 0 then left = fmt('%.6f', left) * 1 end  -- r6
        out[4 * i - 1] = floor(left)
        call('HSET', key, 'w', fixed(ws, '%.0f', '%d'), 'c', fixed(c_after, '%.0f', '%d'))
        if we then
          call('PEXPIRE', key, ceil((we - now) / 1000) + 1000)
        else
          call('PERSIST', key)  -- lifetime: never resets, never expires
        end
      end
    end
    out[4 * i + 1] = '0.000000'
  end
  local remaining = out[4 * i - 1]
  out[4 * i - 1] = remaining > 0 and remaining or 0  -- math.max(0, remaining)
  out[4 * i] = fixed(out[4 * i], '%.6f', '%d.000000')
end
return out

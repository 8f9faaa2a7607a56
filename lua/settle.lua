-- Settles, reads or credits metered budgets (the state lua/policies.lua keeps), and adds a
-- request's usage to its token's daily record. The protocol is documented in
-- include/ratelimit_proxy/limit/policy_script.hpp; src/limit/memory_store.cpp (settle, peek,
-- credit) is the in-memory twin and must do the same arithmetic in the same order.
--
-- Runs once per metered request (settle) or per GET /budget (peek), so it is written for
-- clarity first; it keeps policies.lua's number rules: state as fixed-precision strings
-- (counts and times %.0f, tat %.6f, tb tokens %.12f), compared quantities on the 6-decimal
-- grid, whole numbers (nano-USD up to 1e15) formatted exactly, usage counters passed to
-- HINCRBY as the strings the caller sent.

local tonumber, fmt, floor, ceil = tonumber, string.format, math.floor, math.ceil
local call, pcall_, KEYS, ARGV = redis.call, redis.pcall, KEYS, ARGV

-- As in policies.lua: string.format(pattern, x), whole numbers through the cheaper %d.
local function fixed(x, pattern, whole_pattern)
  if x % 1 == 0 and x > -2^53 and x < 2^53 and (x ~= 0 or 1 / x > 0) then
    return fmt(whole_pattern, x)
  end
  return fmt(pattern, x)
end

local function r6(x)
  if x % 1 ~= 0 then x = fmt('%.6f', x) * 1 end
  return x
end

local mode = ARGV[1]
local settling, crediting = mode == 'settle', mode == 'credit'
if not settling and not crediting and mode ~= 'peek' then
  return redis.error_reply('unknown settle mode ' .. tostring(mode))
end
local now = ARGV[2] ~= '' and tonumber(ARGV[2]) or nil
if now == nil then
  local t = call('TIME')
  now = t[1] * 1000000 + t[2]
end
local n = ARGV[3] * 1
local hold_field = 'h:' .. ARGV[4]

-- Nothing is written unless every item can take the operation.
if crediting then
  for i = 1, n do
    if ARGV[7 * i - 2] ~= 'fw' then
      return redis.error_reply('credit needs a fixed window budget')
    end
  end
end

-- The fixed window containing now, as policies.lua computes it: start and end in µs (end nil
-- for a lifetime window).
local function window_bounds(flags, window)
  local find = string.find
  if find(flags, 'm', 1, true) then
    local function days_from_civil(y, m, d)
      if m <= 2 then y = y - 1 end
      local era = floor(y / 400)
      local yoe = y - era * 400
      local mp = m > 2 and m - 3 or m + 9
      local doy = floor((153 * mp + 2) / 5) + d - 1
      local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
      return era * 146097 + doe - 719468
    end
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
    local ws = days_from_civil(y, m, 1) * 86400 * 1000000
    if m == 12 then
      y, m = y + 1, 1
    else
      m = m + 1
    end
    return ws, days_from_civil(y, m, 1) * 86400 * 1000000
  elseif find(flags, 'w', 1, true) then
    local d = floor(floor(now / 1000000) / 86400)
    local ws = (d - (d + 3) % 7) * 86400 * 1000000
    return ws, ws + 7 * 86400 * 1000000
  elseif find(flags, 'l', 1, true) then
    return 0, nil
  end
  local ww = window * 1000000
  local ws = floor(now / ww) * ww
  return ws, ws + ww
end

local out = {}
for i = 1, n do
  local a = 7 * i - 2
  local algo, key = ARGV[a], KEYS[i]
  local limit, window, burst = ARGV[a + 1] * 1, ARGV[a + 2] * 1, ARGV[a + 3] * 1
  local reserved, amount = ARGV[a + 4] * 1, ARGV[a + 5] * 1
  local flags = ARGV[a + 6] or ''
  local used, held, reset

  if algo == 'fw' then
    local ws, we = window_bounds(flags, window)
    local s = pcall_('HGETALL', key)
    local wrong = s.err ~= nil
    local w, c = nil, 0
    local latest, expired = 0, {}
    held = 0
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
          local amt, exp
          if sp then amt, exp = tonumber(sub(v, 1, sp - 1)), tonumber(sub(v, sp + 1)) end
          if not (amt and exp and exp >= now) then
            expired[#expired + 1] = f
          elseif not (settling and f == hold_field) then
            held = held + amt
            if exp > latest then latest = exp end
          end
        end
      end
    end
    if w ~= ws then c = 0 end  -- an older window: this one starts empty
    if settling or crediting then
      if settling then
        c = c + amount
        expired[#expired + 1] = hold_field
      else
        c = c - amount  -- may go below 0: extra room in this window
      end
      local stored = fixed(c, '%.0f', '%d')
      c = stored * 1  -- the reply says what is stored
      if wrong then call('DEL', key) end
      call('HSET', key, 'w', fixed(ws, '%.0f', '%d'), 'c', stored)
      -- In slices: unpack of thousands of fields would overflow Lua's stack.
      for j = 1, #expired, 256 do
        call('HDEL', key, unpack(expired, j, j + 255 < #expired and j + 255 or #expired))
      end
      if we then
        local last = latest > we and latest or we
        call('PEXPIRE', key, ceil((last - now) / 1000) + 1000)
      else
        call('PERSIST', key)
      end
    end
    used = c
    reset = we and (we - now) / 1000000 or 0

  elseif algo == 'tb' then
    local rate = limit / window
    local cap = burst > 0 and burst or limit
    local s = pcall_('HMGET', key, 'tokens', 'ts')
    local wrong = s.err ~= nil
    local tokens, ts
    if not wrong then tokens, ts = tonumber(s[1]), tonumber(s[2]) end
    if tokens == nil or ts == nil then
      tokens = cap
      ts = now
    end
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end
    local level = tokens + elapsed * rate / 1000000
    level = level < cap and level or cap
    if settling and reserved ~= amount then
      -- Give back what was reserved and not used; below 0 when more was used (a debt).
      level = level + (reserved - amount)
      level = level < cap and level or cap
      local after = r6(level)
      if wrong then call('DEL', key) end
      call('HSET', key, 'tokens', fixed(level, '%.12f', '%d.000000000000'),
           'ts', fixed(now, '%.0f', '%d'))
      call('PEXPIRE', key, ceil((cap - after) / rate * 1000) + 1000)
    end
    local lv = r6(level)
    used, held, reset = cap - lv, 0, (cap - lv) / rate

  elseif algo == 'gcra' then
    local rate = limit / window
    local cap = burst > 0 and burst or limit
    local t = 1000000 / rate
    local r = pcall_('GET', key)
    local wrong = type(r) == 'table' and r.err ~= nil
    local tat = nil
    if not wrong then tat = tonumber(r) end
    if tat == nil then tat = now end
    local tat0 = now > tat and now or tat
    if settling and reserved ~= amount then
      local new_tat = tat0 - (reserved - amount) * t
      if new_tat < now then new_tat = now end
      tat0 = r6(new_tat)
      call('SET', key, fixed(tat0, '%.6f', '%d.000000'), 'PX', ceil((tat0 - now) / 1000) + 1000)
    end
    local avail = r6(cap - (tat0 - now) / t)
    used, held, reset = cap - avail, 0, (tat0 - now) / 1000000

  elseif algo == 'sw' then
    local ww = window * 1000000
    local cur = floor(now / ww) * ww
    local s = pcall_('HMGET', key, 'w', 'c', 'p')
    local wrong = s.err ~= nil
    local w, c, p = nil, 0, 0
    if not wrong then w, c, p = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0 end
    if w == cur then
      if settling and reserved ~= amount then
        -- Only while the reservation's window is the current one: an older count is past.
        c = c - (reserved - amount)
        if c < 0 then c = 0 end
        call('HSET', key, 'c', fixed(c, '%.0f', '%d'))
        call('PEXPIRE', key, ceil(2 * ww / 1000) + 1000)
      end
    else
      if w == cur - ww then
        p = c
      else
        p = 0
      end
      c = 0
    end
    local weight = (ww - (now - cur)) / ww
    used, held = r6(p * weight + c), 0
    if c > 0 then
      reset = (cur + 2 * ww - now) / 1000000
    elseif p > 0 then
      reset = (cur + ww - now) / 1000000
    else
      reset = 0
    end

  else
    return redis.error_reply('settle: unknown algorithm ' .. tostring(algo))
  end

  out[3 * i - 2] = fixed(used, '%.6f', '%d.000000')
  out[3 * i - 1] = fixed(held, '%.6f', '%d.000000')
  out[3 * i] = fixed(reset, '%.6f', '%d.000000')
end

-- The usage record: per model, counters added as the integers the caller sent.
local usage, days = KEYS[n + 1], KEYS[n + 2]
if settling and usage then
  local u = 5 + 7 * n
  local token, model, retention = ARGV[u], ARGV[u + 1], ARGV[u + 8]
  local m = model .. '|'
  call('HINCRBY', usage, m .. 'requests', 1)
  call('HINCRBY', usage, m .. 'input', ARGV[u + 2])
  call('HINCRBY', usage, m .. 'cached_input', ARGV[u + 3])
  call('HINCRBY', usage, m .. 'cache_write', ARGV[u + 4])
  call('HINCRBY', usage, m .. 'output', ARGV[u + 5])
  call('HINCRBY', usage, m .. 'nano_usd', ARGV[u + 6])
  call('HINCRBY', usage, m .. 'estimated', ARGV[u + 7])
  call('EXPIRE', usage, retention)
  if days then
    call('SADD', days, token)
    call('EXPIRE', days, retention)
  end
end
return out

-- wrk script: counts responses by HTTP status and prints one "status <code> <count>" line per
-- status at the end. Used by bench/run.sh for the short check run before measuring (defining
-- response() makes wrk parse every response, which costs wrk CPU, so timed runs do not use it).
-- Usage: wrk -t1 -c8 -d1s -s bench/count_status.lua -H 'Authorization: Bearer ...' URL
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   counts = {}
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      local c = thread:get("counts") or {}
      for status, n in pairs(c) do
         total[status] = (total[status] or 0) + n
      end
   end
   for status, n in pairs(total) do
      io.write(string.format("status %d %d\n", status, n))
   end
end

#pragma once

// The protocols of lua/policies.lua (check) and lua/settle.lua (settle, peek, credit),
// shared by redis_limiter (caller), memory_store (their twin) and the tests.
//
// Numbers: ARGV numbers are anything Lua's tonumber reads back exactly (shortest round-trip
// or fixed notation); metered costs are whole numbers (tokens, nano-USD up to 1e15) and stay
// exact end to end: whole numbers below 2^53 are stored and replied through %d.
//
// ======== lua/policies.lua: decide every item, then consume from all or none.
//
// KEYS[i]      the bucket key of item i (bucket_key())
// ARGV[1]      "" to use Redis's TIME, or the time in Unix microseconds (tests replay sequences)
// ARGV[2]      n, the number of items
// then 6 fields per item i (ARGV[3 + 6*(i-1)] ...):
//   algorithm  "tb" | "gcra" | "sw" | "fw" | "cc" (concurrency)
//   limit      requests (cost units) per window; for cc the slots (leases held at once)
//   window     window_seconds (ignored for a calendar week, month or lifetime); for cc the
//              lease time
//   burst      capacity for tb and gcra (0: = limit); for cc this request's lease id (the
//              sorted set member); ignored otherwise
//   cost       of this request for this item; metered: the reservation (an upper bound)
//   flags      "" or letters:
//                "s" shadow (never blocks the request)
//                "m" fw: the UTC calendar month
//                "w" fw: the UTC calendar week, from Monday 00:00
//                "l" fw: lifetime, one window for ever (never resets; reset reported 0)
//                "h" metered (never on cc): fw holds the cost under the request's hold id
//                    instead of counting it; tb, gcra and sw consume it as any cost (settle
//                    gives back the difference)
// ARGV[3 + 6n] the request's hold id      } present when some item has "h"
// ARGV[4 + 6n] the hold's life in seconds }
//
// Returns { allowed_all, then per item: allowed (0/1/2), remaining (int),
//           reset_seconds (string), retry_after_seconds (string) }, 1 + 4n elements.
// allowed_all is 1 when every non-shadow item allows; then every item that allows is
// consumed. Otherwise nothing is written at all. For cc, reset is 0 while a slot is free
// after this request, else 1; retry is 1.
// Metered fw: the live holds (expiry >= now) are summed as `held`; allowed (1) iff
// c + held + cost <= limit; allowed 2 (policy_result: allowed false, held_out true) when
// refused only because of the holds (c + cost <= limit), with retry 1; remaining is
// limit - c - held, after consuming also - cost. A lifetime window's reset and retry are 0.
//
// ======== lua/settle.lua: metered budgets after the request, and reads for GET /budget.
//
// KEYS[i]      the bucket key of item i; mode settle optionally adds
// KEYS[n + 1]  the usage key (usage_key()) and KEYS[n + 2] the usage-days key
// ARGV[1]      mode: "settle" | "peek" | "credit"
// ARGV[2]      "" (Redis's TIME) or the time in Unix microseconds
// ARGV[3]      n, the number of items
// ARGV[4]      the hold id (settle; "" for peek and credit)
// then 7 fields per item i (ARGV[5 + 7*(i-1)] ...): algorithm ("tb" | "gcra" | "sw" | "fw";
//   never "cc"), limit, window, burst, reserved (what the check consumed or held: its cost),
//   amount (settle: what the request really cost; credit: what to give back; peek: ignored),
//   flags (the calendar letters "m" | "w" | "l"; others are ignored)
// with the usage keys, after the items (ARGV[5 + 7n] ...): token id, model, input,
//   cached_input, cache_write, output, nano_usd, estimated (0/1), retention seconds
//
// settle   fw: HDEL "h:<hold id>" (and any dead hold); c of the CURRENT window += amount (a
//          stored older window starts anew first); the key's expiry stays max(window end,
//          latest live hold) + 1 s (lifetime: PERSIST). tb: tokens (refilled to now)
//          += reserved - amount, capped at the capacity, below 0 when more was used (a
//          debt); ts = now. gcra: tat (at least now) -= (reserved - amount) * T, not below
//          now. sw: c -= reserved - amount (not below 0) if the stored window is still the
//          current one, else nothing. tb, gcra and sw write nothing when amount = reserved.
//          Usage (if KEYS[n + 1]): HINCRBY "<model>|requests" 1 and "<model>|input",
//          "|cached_input", "|cache_write", "|output", "|nano_usd", "|estimated" by the
//          given integers; EXPIRE both keys retention; SADD the days key the token id.
// peek     writes nothing.
// credit   fw only (any other algorithm: error reply "credit needs a fixed window budget",
//          nothing written): c of the current window -= amount (below 0: extra room this
//          window); expiry as in settle.
// An unknown mode or algorithm: an error reply.
// Returns 3 strings per item, after the operation: used, held, reset_seconds (%.6f).
//   fw    used = c of the current window (0 if the stored window is older), held = the
//         live holds' sum (settle: without the one just settled), reset = window end - now
//         (lifetime 0)
//   tb    used = capacity - level, held 0, reset = (capacity - level) / rate
//   gcra  used = capacity - available (= (tat - now) / T), held 0, reset = tat - now
//   sw    used = the weighted estimate p * weight + c, held 0, reset as the check's
//
// ======== Stored state per key (the admin API shows it), each with an expiry once it
// carries nothing:
//   tb    hash  { tokens, ts (µs) }
//   gcra  string: the theoretical arrival time in µs (one SET ... PX)
//   sw    hash  { w (current window start, µs), c (count in it), p (count in the previous) }
//   fw    hash  { w (window start, µs; 0 for lifetime), c (count) }; metered also
//               "h:<hold id>" = "<amount> <expiry µs>" per hold (live while now <= expiry;
//               dead ones are dropped when the key is next written). Expires at the
//               window's end + 1 s, metered at max(window end, latest hold) + 1 s; a
//               lifetime window never expires (PERSIST).
//   cc    zset  lease id -> expiry (µs); a lease counts while now <= expiry. Consuming drops
//               expired members and adds this one; the key expires 2 lease times + 1 s after
//               the last acquire or renewal. Released by ZREM key id; renewed by
//               ZADD key XX INCR <renew interval µs> id (no clock: each renewal adds the
//               interval it covers) and PEXPIRE (concurrency_leases.hpp).
//   usage hash  "<model>|<what>" -> integer (keys.hpp); usage-days: set of token ids.

#include <cstddef>
#include <string_view>

#include "ratelimit_proxy/limit/policy.hpp"

namespace ratelimit_proxy::limit::policy_script {

std::string_view algorithm_code(algorithm a);
constexpr std::size_t fields_per_item = 6;         // policies.lua
constexpr std::size_t settle_fields_per_item = 7;  // settle.lua

}  // namespace ratelimit_proxy::limit::policy_script

#pragma once

// The protocol of lua/policies.lua, shared by redis_limiter (caller) and the tests.
//
// KEYS[i]      the bucket key of item i (bucket_key())
// ARGV[1]      "" to use Redis's TIME, or the time in Unix microseconds (tests replay sequences)
// ARGV[2]      n, the number of items
// then 6 fields per item i (ARGV[3 + 6*(i-1)] ...):
//   algorithm  "tb" | "gcra" | "sw" | "fw" | "cc" (concurrency)
//   limit      requests (cost units) per window; for cc the slots (leases held at once)
//   window     window_seconds (ignored for a calendar month); for cc the lease time
//   burst      capacity for tb and gcra (0: = limit); for cc this request's lease id (the
//              sorted set member); ignored otherwise
//   cost       of this request for this item
//   flags      "" or letters: "s" shadow (never blocks the request), "m" calendar month (fw)
//
// Returns { allowed_all, then per item: allowed (0/1), remaining (int),
//           reset_seconds (string), retry_after_seconds (string) }, 1 + 4n elements.
// allowed_all is 1 when every non-shadow item allows; then every item that allows is
// consumed. Otherwise nothing is written at all. For cc, reset is 0 while a slot is free
// after this request, else 1; retry is 1.
//
// Stored state per key (the admin API shows it), each with an expiry once it carries nothing:
//   tb    hash  { tokens, ts (µs) }
//   gcra  string: the theoretical arrival time in µs (one SET ... PX)
//   sw    hash  { w (current window start, µs), c (count in it), p (count in the previous) }
//   fw    hash  { w (window start, µs), c (count) }
//   cc    zset  lease id -> expiry (µs); a lease counts while now <= expiry. Consuming drops
//               expired members and adds this one; the key expires 2 lease times + 1 s after
//               the last acquire or renewal. Released by ZREM key id; renewed by
//               ZADD key XX INCR <renew interval µs> id (no clock: each renewal adds the
//               interval it covers) and PEXPIRE (concurrency_leases.hpp).

#include <cstddef>
#include <string_view>

#include "ratelimit_proxy/limit/policy.hpp"

namespace ratelimit_proxy::limit::policy_script {

std::string_view algorithm_code(algorithm a);
constexpr std::size_t fields_per_item = 6;

}  // namespace ratelimit_proxy::limit::policy_script

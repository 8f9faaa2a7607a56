#pragma once

#include <string>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

// Header values for one decision: the legacy X-RateLimit trio (Reset in delta-seconds) and
// the IETF httpapi draft fields. Seconds are rounded up so a client that waits them is never
// early. Reset is the time until the bucket is full again; on a denial it is the time until
// the next request is allowed, equal to Retry-After. retry_after is empty unless denied.
struct rate_limit_headers {
    std::string limit;        // X-RateLimit-Limit
    std::string remaining;    // X-RateLimit-Remaining
    std::string reset;        // X-RateLimit-Reset
    std::string policy;       // RateLimit-Policy
    std::string rate_limit;   // RateLimit
    std::string retry_after;  // Retry-After
};

rate_limit_headers make_headers(const decision& d);

}  // namespace ratelimit_proxy::limit

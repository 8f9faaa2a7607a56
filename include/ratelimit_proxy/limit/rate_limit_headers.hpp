#pragma once

#include <array>
#include <string>
#include <string_view>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

// Header values for one decision: the legacy X-RateLimit trio (Reset in delta-seconds) and
// the IETF httpapi draft fields. The trio and RateLimit describe the tightest enforced
// policy; RateLimit-Policy lists every enforced policy that applied. Shadow policies never
// show. Seconds are rounded up so a client that waits them is never early. On a denial Reset
// equals Retry-After. All empty when no enforced policy applied.
struct rate_limit_headers {
    std::string limit;        // X-RateLimit-Limit
    std::string remaining;    // X-RateLimit-Remaining
    std::string reset;        // X-RateLimit-Reset
    std::string policy;       // RateLimit-Policy
    std::string rate_limit;   // RateLimit
    std::string retry_after;  // Retry-After

    bool empty() const { return limit.empty(); }
    // "Name: value\r\n" for each non-empty field, ready to go into a serialized header.
    void append_lines(std::string& out) const;
    // Whether append_lines writes this field (one of rate_limit_field_names): a message
    // passed through drops its own field of that name first.
    bool sets(std::string_view field_name) const;

  private:
    // The values in the order of rate_limit_field_names.
    std::array<const std::string*, 6> values() const {
        return {&limit, &remaining, &reset, &policy, &rate_limit, &retry_after};
    }
};

// The field names rate_limit_headers writes.
inline constexpr std::string_view rate_limit_field_names[] = {
    "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy",
    "RateLimit",         "Retry-After",
};

rate_limit_headers make_headers(const decision& d);

}  // namespace ratelimit_proxy::limit

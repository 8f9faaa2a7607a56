#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/limit/policy.hpp"

namespace ratelimit_proxy::limit {

// One policy of one request's check, with everything the store needs.
struct check_item {
    const policy* source = nullptr;  // name, algorithm; outlives the check
    std::string key;                 // the full store key (bucket_key())
    limits numbers;                  // after per-token overrides and scaling
    // Requests: the policy's cost. Metered: the reservation, an upper bound of the request's
    // cost in the meter's unit (tokens, nano-USD), held until settled (limiter::settle).
    double cost = 1;
    bool metered = false;
    bool shadow = false;
    // Concurrency items: the request's lease id (numbers.window_seconds is the lease time).
    std::string_view lease_id;
    // Metered items: the request's hold id and how long its hold lives unsettled.
    std::string_view hold_id;
    double hold_seconds = 0;
};

// What one policy said.
struct policy_result {
    const policy* source = nullptr;
    bool allowed = false;
    bool shadow = false;
    std::int64_t remaining = 0;      // after this request if it was consumed, else before
    double reset_seconds = 0;        // until the quota is whole again
    double retry_after_seconds = 0;  // until `cost` would be allowed (when not allowed)
    double quota = 0;                // for RateLimit-Policy: q
    double window_seconds = 0;       // for RateLimit-Policy: w
    // Metered only: refused because in-flight holds fill it, not because it is spent
    // (retryable: Retry-After 1).
    bool held_out = false;
};

// The result of checking one request against every policy that applies to it.
struct decision {
    bool allowed = true;  // every enforced (non-shadow) policy allowed it
    // Redis could not answer and the local limiter decided instead.
    bool decided_locally = false;
    // Redis could not answer and a policy fails closed: answer 503, not 429.
    bool store_unavailable = false;
    std::vector<policy_result> results;  // in check_item order
    // The policy the headers report: when denied the enforced denial with the longest
    // retry-after, else the enforced policy with the least remaining. -1: none enforced.
    int tightest = -1;
    // The same choice among the request policies (what the RateLimit fields describe) and
    // among the metered ones (the budget fields). -1: none.
    int tightest_request = -1;
    int tightest_budget = -1;

    void choose_tightest();
};

}  // namespace ratelimit_proxy::limit

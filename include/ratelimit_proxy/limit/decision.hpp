#pragma once

#include <cstdint>
#include <string>

namespace ratelimit_proxy::limit {

// One limit rule. Immutable once built; shared by every worker.
struct policy {
    std::string name = "default";
    double rate_per_second = 1;  // refill rate
    double capacity = 60;        // burst
    // Seconds a full refill takes: the window the quota is spread over.
    double window_seconds() const { return capacity / rate_per_second; }
};

// The result of checking one request against a policy.
struct decision {
    bool allowed = false;
    // Redis could not answer and the local limiter decided instead.
    bool decided_locally = false;
    // Redis could not answer and the policy fails closed: answer 503, not 429.
    bool store_unavailable = false;
    const policy* applied = nullptr;
    std::int64_t remaining = 0;
    double reset_seconds = 0;        // until the bucket is full again
    double retry_after_seconds = 0;  // until this request would be allowed (denied only)
};

}  // namespace ratelimit_proxy::limit

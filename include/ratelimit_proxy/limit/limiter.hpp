#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

using decision_handler = std::function<void(const decision&)>;

// Checks and consumes atomically. Implementations run on one worker thread; the handler is
// called exactly once, on that thread (possibly before check() returns).
class limiter {
  public:
    virtual ~limiter() = default;
    virtual void check(std::string_view bucket_id, std::uint32_t cost, decision_handler done) = 0;
};

}  // namespace ratelimit_proxy::limit

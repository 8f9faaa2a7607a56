#pragma once

#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

using decision_handler = std::function<void(decision&&)>;

// The concurrency leases one request took: its lease id, the keys it holds it under, and
// whether the local store holds them (STORE=memory, or decided while Redis was away).
struct lease_refs {
    std::string_view id;
    std::span<const std::string> keys;
    bool local = false;
};

// Checks every item and consumes from all of them only if every enforced one allows
// (a denied request consumes nothing), atomically. Implementations run on one worker thread;
// the handler is called exactly once, on that thread (possibly before check() returns).
// The items (and the policies they point to) must stay alive until the handler runs.
class limiter {
  public:
    virtual ~limiter() = default;
    virtual void check(std::span<const check_item> items, decision_handler done) = 0;
    // Gives the leases back; fire and forget (never waits for, nor delays, anything).
    virtual void release(const lease_refs& leases) = 0;
    // Extends the leases by `extend` (the renewal interval); fire and forget too.
    virtual void renew(const lease_refs& leases, std::chrono::microseconds extend) = 0;
};

}  // namespace ratelimit_proxy::limit

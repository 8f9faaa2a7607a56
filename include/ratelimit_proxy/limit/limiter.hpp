#pragma once

#include <functional>
#include <span>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

using decision_handler = std::function<void(decision&&)>;

// Checks every item and consumes from all of them only if every enforced one allows
// (a denied request consumes nothing), atomically. Implementations run on one worker thread;
// the handler is called exactly once, on that thread (possibly before check() returns).
// The items (and the policies they point to) must stay alive until the handler runs.
class limiter {
  public:
    virtual ~limiter() = default;
    virtual void check(std::span<const check_item> items, decision_handler done) = 0;
};

}  // namespace ratelimit_proxy::limit

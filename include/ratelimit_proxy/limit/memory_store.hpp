#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

// The four algorithms of lua/policies.lua, in process memory, with the same decisions for
// the same sequence of (items, time): the in-memory store (STORE=memory), the local fallback
// while Redis is away, and the twin the equivalence tests compare the Lua script with.
// Not locked: one owner thread, or wrapped by shared_memory_limiter.
class memory_store {
  public:
    // Decides all items at now_us (Unix time in microseconds) and consumes from all of them
    // only if every enforced item allows. Fills results, allowed and tightest.
    decision check(std::span<const check_item> items, std::int64_t now_us);

    // Drops a bucket (admin reset).
    void erase(std::string_view key);
    std::size_t size() const { return buckets_.size(); }

  private:
    // One stored state per key, whatever the algorithm (the fields each uses are documented
    // in memory_store.cpp beside the Lua equivalent).
    struct bucket {
        double a = 0;
        double b = 0;
        double c = 0;
        std::int64_t expires_us = 0;
    };
    void forget_expired(std::int64_t now_us);

    std::unordered_map<std::string, bucket> buckets_;
    std::int64_t next_sweep_us_ = 0;
};

// Unix time in microseconds from the system clock (the memory store's default clock).
std::int64_t unix_micros();

// Start and end (Unix seconds) of the UTC calendar month containing t.
void utc_month_bounds(std::int64_t unix_seconds, std::int64_t& start, std::int64_t& end);

}  // namespace ratelimit_proxy::limit

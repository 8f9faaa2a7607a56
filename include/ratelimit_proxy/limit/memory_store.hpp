#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

// The five algorithms of lua/policies.lua, in process memory, with the same decisions for
// the same sequence of (items, time): the in-memory store (STORE=memory), the local fallback
// while Redis is away, and the twin the equivalence tests compare the Lua script with.
// Not locked: one owner thread, or wrapped by shared_memory_limiter.
class memory_store {
  public:
    // Decides all items at now_us (Unix time in microseconds) and consumes from all of them
    // only if every enforced item allows. Fills results, allowed and tightest.
    decision check(std::span<const check_item> items, std::int64_t now_us);

    // Drops a bucket or lease set (admin reset).
    void erase(std::string_view key);
    std::size_t size() const { return buckets_.size() + leases_.size(); }

    // Concurrency leases (check() takes them): given back, or extended by extend_us.
    void release(std::string_view key, std::string_view lease_id);
    void renew(std::string_view key, std::string_view lease_id, std::int64_t extend_us);
    // The leases of a concurrency key still live at now_us.
    std::size_t live_leases(std::string_view key, std::int64_t now_us) const;

  private:
    // One stored state per key, whatever the algorithm (the fields each uses are documented
    // in memory_store.cpp beside the Lua equivalent).
    struct bucket {
        double a = 0;
        double b = 0;
        double c = 0;
        std::int64_t expires_us = 0;
    };
    struct lease {
        std::string id;
        std::int64_t expires_us = 0;
    };
    void forget_expired(std::int64_t now_us);

    std::unordered_map<std::string, bucket> buckets_;
    // Few leases per key (at most the limit live): a vector beats a tree.
    std::unordered_map<std::string, std::vector<lease>> leases_;
    std::int64_t next_sweep_us_ = 0;
};

// Unix time in microseconds from the system clock (the memory store's default clock).
std::int64_t unix_micros();

// Start and end (Unix seconds) of the UTC calendar month containing t.
void utc_month_bounds(std::int64_t unix_seconds, std::int64_t& start, std::int64_t& end);

}  // namespace ratelimit_proxy::limit

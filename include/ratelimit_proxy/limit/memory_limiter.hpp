#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "ratelimit_proxy/limit/limiter.hpp"

namespace ratelimit_proxy::limit {

// The token bucket of lua/token_bucket.lua, in process memory. Used when Redis cannot
// answer, and by tests to cross-check the Lua maths.
class memory_limiter final : public limiter {
  public:
    using clock_fn = std::function<std::int64_t()>;  // microseconds

    explicit memory_limiter(const policy& p, clock_fn now = {});

    void check(std::string_view bucket_id, std::uint32_t cost, decision_handler done) override;
    decision check_now(std::string_view bucket_id, std::uint32_t cost);

  private:
    struct bucket {
        double tokens;
        std::int64_t updated_us;
    };
    void forget_full_buckets(std::int64_t now);

    const policy& policy_;
    clock_fn now_;
    std::unordered_map<std::string, bucket> buckets_;
    std::int64_t next_sweep_us_ = 0;
};

// The same, shared by all worker threads of a process: the local fallback while Redis is
// away must hold the instance's share of the limit whichever thread a request lands on.
// Locked, but only used during an outage.
class shared_memory_limiter {
  public:
    explicit shared_memory_limiter(const policy& p) : limiter_(p) {}
    decision check_now(std::string_view bucket_id, std::uint32_t cost) {
        std::lock_guard lock(mutex_);
        return limiter_.check_now(bucket_id, cost);
    }

  private:
    std::mutex mutex_;
    memory_limiter limiter_;
};

}  // namespace ratelimit_proxy::limit

#pragma once

#include <chrono>
#include <functional>
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

}  // namespace ratelimit_proxy::limit

#include "ratelimit_proxy/limit/memory_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace ratelimit_proxy::limit {

namespace {
std::int64_t steady_micros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
constexpr std::int64_t sweep_interval_us = 10'000'000;
}  // namespace

memory_limiter::memory_limiter(const policy& p, clock_fn now)
    : policy_(p), now_(now ? std::move(now) : clock_fn(steady_micros)) {}

void memory_limiter::check(std::string_view bucket_id, std::uint32_t cost, decision_handler done) {
    done(check_now(bucket_id, cost));
}

decision memory_limiter::check_now(std::string_view bucket_id, std::uint32_t cost) {
    const std::int64_t now = now_();
    forget_full_buckets(now);
    auto [it, inserted] =
        buckets_.try_emplace(std::string(bucket_id), bucket{policy_.capacity, now});
    bucket& b = it->second;
    const double elapsed = static_cast<double>(std::max<std::int64_t>(0, now - b.updated_us));
    double tokens = std::min(policy_.capacity, b.tokens + elapsed * policy_.rate_per_second / 1e6);

    decision d;
    d.applied = &policy_;
    if (tokens >= cost) {
        tokens -= cost;
        d.allowed = true;
    } else {
        d.retry_after_seconds = (cost - tokens) / policy_.rate_per_second;
    }
    b.tokens = tokens;
    b.updated_us = now;
    d.remaining = static_cast<std::int64_t>(std::floor(tokens));
    d.reset_seconds = (policy_.capacity - tokens) / policy_.rate_per_second;
    return d;
}

// A bucket that has refilled completely is the same as no bucket: drop those now and then
// so memory follows the number of active clients, not of all clients ever seen.
void memory_limiter::forget_full_buckets(std::int64_t now) {
    if (now < next_sweep_us_)
        return;
    next_sweep_us_ = now + sweep_interval_us;
    std::erase_if(buckets_, [&](const auto& entry) {
        const double elapsed = static_cast<double>(now - entry.second.updated_us);
        return entry.second.tokens + elapsed * policy_.rate_per_second / 1e6 >= policy_.capacity;
    });
}

}  // namespace ratelimit_proxy::limit

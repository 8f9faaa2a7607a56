#include "ratelimit_proxy/redis/circuit_breaker.hpp"

#include <spdlog/spdlog.h>

namespace ratelimit_proxy::redis {

void circuit_breaker::record_success() {
    if (state_ != state::closed)
        spdlog::info("Redis answers again: circuit breaker closed, limits enforced by Redis");
    consecutive_failures_ = 0;
    state_ = state::closed;
}

void circuit_breaker::record_failure(clock::time_point now) {
    ++failures_total_;
    const bool was_closed = state_ == state::closed;
    if (state_ == state::half_open || ++consecutive_failures_ >= failure_threshold_) {
        if (was_closed) {
            ++times_opened_;
            spdlog::warn(
                "Redis unavailable: circuit breaker open after {} failures; deciding "
                "locally, probing every {} ms",
                consecutive_failures_,
                std::chrono::duration_cast<std::chrono::milliseconds>(probe_interval_).count());
        }
        state_ = state::open;
        next_probe_ = now + probe_interval_;
    }
}

}  // namespace ratelimit_proxy::redis

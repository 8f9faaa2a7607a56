#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace ratelimit_proxy::redis {

// Stops paying the command timeout on every request while Redis is down: after
// `failure_threshold` consecutive failures the breaker opens and callers go straight to their
// fallback; once per `probe_interval` one call is let through, and its success closes it.
// One per worker thread, so not thread-safe; only current() may be read from another thread.
class circuit_breaker {
  public:
    using clock = std::chrono::steady_clock;
    enum class state { closed, open, half_open };

    explicit circuit_breaker(unsigned failure_threshold = 3,
                             clock::duration probe_interval = std::chrono::seconds(1))
        : failure_threshold_(failure_threshold), probe_interval_(probe_interval) {}

    // True if the caller may use Redis now. While open, true once per probe interval.
    bool allow(clock::time_point now = clock::now()) {
        switch (state_.load(std::memory_order_relaxed)) {
            case state::closed:
                return true;
            case state::half_open:
                // The probe is still out; if it never reports back, send another after an
                // interval rather than stay half-open for ever.
                if (now < next_probe_ + probe_interval_)
                    return false;
                next_probe_ = now;
                return true;
            case state::open:
                if (now < next_probe_)
                    return false;
                state_ = state::half_open;
                next_probe_ = now;
                return true;
        }
        return true;
    }

    // Both log the transitions (open: warn, closed again: info).
    void record_success();
    void record_failure(clock::time_point now = clock::now());

    state current() const { return state_.load(std::memory_order_relaxed); }
    bool is_open() const { return state_ != state::closed; }
    std::uint64_t times_opened() const { return times_opened_; }
    std::uint64_t failures_total() const { return failures_total_; }

  private:
    unsigned failure_threshold_;
    clock::duration probe_interval_;
    std::atomic<state> state_ = state::closed;  // atomic only for the scrape's reads
    unsigned consecutive_failures_ = 0;
    clock::time_point next_probe_{};
    std::uint64_t times_opened_ = 0;
    std::uint64_t failures_total_ = 0;
};

}  // namespace ratelimit_proxy::redis

#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace ratelimit_proxy::server {

struct load_rule {
    bool enabled = false;
    double error_rate = 0.5;               // failures / requests at or above this: struggling
    std::chrono::milliseconds latency{0};  // mean latency at or above this: struggling (0: off)
    std::chrono::milliseconds window{10000};
    unsigned min_requests = 20;  // fewer requests in the window prove nothing
    double scale = 0.5;          // limits are multiplied by this while struggling
};

// Load-aware limits: workers record each upstream exchange (a 5xx, a connect failure or a
// timeout is a failure); once a second the control thread looks at the last `window` and
// sets the factor every limit is multiplied by: `scale` while the upstream struggles, 1 as
// soon as the window looks healthy again. Counters are per worker, so recording is one
// relaxed atomic add on a cache line no other worker writes.
class load_monitor {
  public:
    load_monitor(const load_rule& rule, unsigned workers);

    void record(unsigned worker, bool failed, std::chrono::microseconds latency) {
        auto& s = *slots_[worker];
        s.requests.fetch_add(1, std::memory_order_relaxed);
        if (failed)
            s.failures.fetch_add(1, std::memory_order_relaxed);
        s.latency_us.fetch_add(static_cast<std::uint64_t>(latency.count()),
                               std::memory_order_relaxed);
    }

    // Control thread, about once a second.
    void evaluate(std::chrono::steady_clock::time_point now);

    double factor() const { return factor_.load(std::memory_order_relaxed); }
    bool enabled() const { return rule_.enabled; }

  private:
    struct alignas(64) slot {
        std::atomic<std::uint64_t> requests{0};
        std::atomic<std::uint64_t> failures{0};
        std::atomic<std::uint64_t> latency_us{0};
    };
    struct sample {
        std::chrono::steady_clock::time_point at;
        std::uint64_t requests, failures, latency_us;  // totals at `at`
    };

    load_rule rule_;
    std::vector<std::unique_ptr<slot>> slots_;
    std::deque<sample> samples_;
    std::atomic<double> factor_{1};
};

}  // namespace ratelimit_proxy::server

#include "ratelimit_proxy/server/load_monitor.hpp"

#include <spdlog/spdlog.h>

namespace ratelimit_proxy::server {

load_monitor::load_monitor(const load_rule& rule, unsigned workers) : rule_(rule) {
    for (unsigned i = 0; i < workers; ++i)
        slots_.push_back(std::make_unique<slot>());
}

void load_monitor::evaluate(std::chrono::steady_clock::time_point now) {
    if (!rule_.enabled)
        return;
    sample current{now, 0, 0, 0};
    for (const auto& s : slots_) {
        current.requests += s->requests.load(std::memory_order_relaxed);
        current.failures += s->failures.load(std::memory_order_relaxed);
        current.latency_us += s->latency_us.load(std::memory_order_relaxed);
    }
    if (samples_.empty())
        samples_.push_back({now, 0, 0, 0});  // everything so far happened in this window
    samples_.push_back(current);
    // Keep the newest sample at least `window` old as the baseline.
    while (samples_.size() > 2 && now - samples_[1].at >= rule_.window)
        samples_.pop_front();
    const sample& base = samples_.front();
    const auto requests = current.requests - base.requests;
    const auto failures = current.failures - base.failures;
    const auto latency_us = current.latency_us - base.latency_us;

    bool struggling = false;
    if (requests >= rule_.min_requests && requests > 0) {
        const double error_rate = static_cast<double>(failures) / static_cast<double>(requests);
        const double mean_ms =
            static_cast<double>(latency_us) / 1000.0 / static_cast<double>(requests);
        struggling =
            error_rate >= rule_.error_rate ||
            (rule_.latency.count() > 0 && mean_ms >= static_cast<double>(rule_.latency.count()));
        if (struggling && factor() == 1)
            spdlog::warn(
                "upstream struggling ({} of {} requests failed, mean {:.0f} ms over the "
                "last {} ms): limits scaled by {}",
                failures, requests, mean_ms, rule_.window.count(), rule_.scale);
    }
    if (!struggling && factor() < 1)
        spdlog::info("upstream recovered: limits back to normal");
    factor_.store(struggling ? rule_.scale : 1.0, std::memory_order_relaxed);
}

}  // namespace ratelimit_proxy::server

#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

namespace ratelimit_proxy::metrics {

// A counter with one writer (its worker's thread) and any number of readers (the scrape).
// A relaxed load and store, not fetch_add: no locked instruction on the hot path, and no other
// thread ever writes it. The exposition adds the workers' cells up.
class counter_cell {
  public:
    void add(std::uint64_t n = 1) {
        value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<std::uint64_t> value_{0};
};

// A value one thread sets and others read (a gauge, or a time stamp).
class gauge_cell {
  public:
    void set(double v) { value_.store(v, std::memory_order_relaxed); }
    double value() const { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> value_{0};
};

// Upper bounds of a histogram's buckets (the +Inf bucket is implicit), fixed at compile time.
using bucket_bounds = std::span<const double>;

// Seconds, for request and upstream times.
inline constexpr double duration_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,  0.5,    1,     2.5,  5,     10,   30};
// Seconds, for the proxy's own overhead and Redis commands: well under a millisecond.
inline constexpr double fast_duration_bounds[] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
// A share of a limit, 0 to 1.
inline constexpr double ratio_bounds[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1};
// Commands carried by one socket write.
inline constexpr double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128};

// A histogram's counts summed over workers: per bucket (not cumulative), the +Inf bucket last.
struct histogram_totals {
    std::array<std::uint64_t, 17> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
};

// A histogram with one writer, like counter_cell. Bucket counts are not cumulative here; the
// exposition makes them so.
class histogram_cell {
  public:
    static constexpr std::size_t max_buckets = 16;

    explicit histogram_cell(bucket_bounds bounds) : bounds_(bounds) {}

    void observe(double v) {
        std::size_t i = 0;
        while (i < bounds_.size() && v > bounds_[i])
            ++i;
        counts_[i].add();
        sum_.set(sum_.value() + v);
    }
    bucket_bounds bounds() const { return bounds_; }
    void add_to(histogram_totals& t) const;

  private:
    bucket_bounds bounds_;
    std::array<counter_cell, max_buckets + 1> counts_;
    gauge_cell sum_;
};

}  // namespace ratelimit_proxy::metrics

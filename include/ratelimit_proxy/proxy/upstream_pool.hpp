#pragma once

#include <chrono>
#include <deque>
#include <memory>

#include "ratelimit_proxy/metrics/cells.hpp"
#include "ratelimit_proxy/proxy/upstream_connection.hpp"

namespace ratelimit_proxy::proxy {

// Keep-alive connections to the one upstream, for one worker thread (no locking).
class upstream_pool {
  public:
    using acquire_handler =
        std::function<void(beast::error_code, std::unique_ptr<upstream_connection>, bool reused)>;

    upstream_pool(boost::asio::io_context& io, boost::asio::ssl::context* tls,
                  upstream_endpoint where, std::chrono::milliseconds connect_timeout,
                  std::size_t max_idle, std::chrono::milliseconds idle_timeout);

    // An idle connection, else a new one. With probe (and always for TLS) an idle one is
    // first checked with a non-blocking peek; without, a caller that can safely retry on a
    // fresh connection (an idempotent request with no body) saves that system call.
    void acquire(acquire_handler done, bool probe = true);
    // A fresh connection, never a pooled one (to retry after a reused one failed).
    void connect_new(acquire_handler done);
    void release(std::unique_ptr<upstream_connection> conn);
    std::size_t idle_count() const { return idle_.size(); }
    void clear();

    // Written on the pool's thread, readable from any (the scrape).
    struct counters {
        metrics::counter_cell opened;
        metrics::counter_cell connect_failures;
        metrics::counter_cell reused;
        metrics::gauge_cell idle;
    };
    const counters& stats() const { return stats_; }

  private:
    void count_idle() { stats_.idle.set(static_cast<double>(idle_.size())); }
    void evict_expired(std::chrono::steady_clock::time_point now);

    boost::asio::io_context& io_;
    boost::asio::ssl::context* tls_;
    upstream_endpoint where_;
    std::chrono::milliseconds connect_timeout_;
    std::size_t max_idle_;
    std::chrono::milliseconds idle_timeout_;
    std::deque<std::unique_ptr<upstream_connection>> idle_;  // most recently used at the back
    counters stats_;
};

}  // namespace ratelimit_proxy::proxy

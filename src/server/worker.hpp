#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <atomic>
#include <memory>
#include <unordered_set>
#include <vector>

#include "proxy_context.hpp"
#include "ratelimit_proxy/auth/token_store.hpp"
#include "ratelimit_proxy/limit/concurrency_leases.hpp"
#include "ratelimit_proxy/limit/deny_cache.hpp"
#include "ratelimit_proxy/limit/redis_limiter.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/proxy/upstream_pool.hpp"
#include "ratelimit_proxy/redis/circuit_breaker.hpp"
#include "ratelimit_proxy/redis/connection.hpp"
#include "ratelimit_proxy/server/admission.hpp"
#include "ratelimit_proxy/server/proxy_metrics.hpp"

namespace ratelimit_proxy::server {

class session;
struct exchange_state;

// One thread's world: its io_context, its Redis connection, token cache, limiter and
// upstream pool. Sessions accepted onto a worker never leave it, so none of this is locked.
class worker {
  public:
    static constexpr std::size_t body_buffer_size = 64 * 1024;

    worker(const proxy_context& ctx, unsigned index, std::shared_ptr<const limit::rule_set> rules);
    ~worker();

    const proxy_context& context() const { return ctx_; }
    boost::asio::io_context& io() { return io_; }
    redis::connection& redis() { return redis_; }
    // On this worker's thread: new rules (admin change, SIGHUP). Tokens are looked up again,
    // so tier changes and revocations apply at once.
    void set_rules(std::shared_ptr<const limit::rule_set> rules);
    proxy::upstream_pool& pool() { return pool_; }
    const proxy::upstream_pool& pool() const { return pool_; }
    const redis::connection& redis() const { return redis_; }
    const redis::circuit_breaker& breaker() const { return breaker_; }
    // This worker's metrics: written on its thread, read by the scrape.
    worker_metrics& metrics() { return metrics_; }
    const worker_metrics& metrics() const { return metrics_; }
    unsigned index() const { return index_; }
    // What every session's admission decides with.
    const admission_context& admission() const { return admission_; }

    // Relay buffers are recycled so a request costs no large allocation.
    std::unique_ptr<char[]> take_buffer();
    void return_buffer(std::unique_ptr<char[]> buffer);
    // Request header buffers too: an idle connection gives its buffer back, and the next
    // request on any connection takes one instead of allocating (and freeing) 4 KiB.
    boost::beast::flat_buffer take_header_buffer();
    void return_header_buffer(boost::beast::flat_buffer&& buffer);
    // And the parser and serializers of an upstream exchange (over 1 KiB: glibc consolidates
    // its fast bins on every allocation that large).
    std::unique_ptr<exchange_state> take_exchange();
    void return_exchange(std::unique_ptr<exchange_state> e);

    void add(session* s);
    void remove(session* s);
    std::size_t session_count() const { return session_count_.load(std::memory_order_relaxed); }

    // Called on the worker's thread: close idle connections, finish busy ones.
    void drain();
    // Connects to Redis; on_connected runs on this thread after every (re)connect.
    void start(std::function<void()> on_connected);
    void stop();

  private:
    // Every renew interval: this worker's live concurrency leases renewed in one burst.
    void schedule_renewal();

    const proxy_context& ctx_;
    unsigned index_;
    // Declared before io_ so they outlive it: destroying io_ destroys pending handlers, and
    // with them sessions, which unregister themselves and hand back their buffers.
    std::unordered_set<session*> sessions_;
    std::atomic<std::size_t> session_count_{0};
    std::vector<std::unique_ptr<char[]>> spare_buffers_;
    std::vector<boost::beast::flat_buffer> spare_header_buffers_;
    std::vector<std::unique_ptr<exchange_state>> spare_exchanges_;
    worker_metrics metrics_;
    // Before io_ too (sessions hold leases), and the limiter before them. The limiter only
    // keeps references to redis_ and breaker_ when made; ~worker releases every lease
    // (release_all) while they still exist.
    std::unique_ptr<limit::limiter> limiter_;
    limit::concurrency_leases leases_;
    boost::asio::io_context io_;
    boost::asio::steady_timer renew_timer_;
    redis::connection redis_;
    redis::circuit_breaker breaker_;
    auth::token_store tokens_;
    limit::deny_cache denials_;
    std::shared_ptr<const limit::rule_set> rules_;  // in force; admission holds them per request
    limit::policy register_policy_;                 // POST /register's own per-IP limit
    proxy::upstream_pool pool_;
    admission_context admission_;  // refers to the members above
};

}  // namespace ratelimit_proxy::server

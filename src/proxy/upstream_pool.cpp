#include "ratelimit_proxy/proxy/upstream_pool.hpp"

namespace ratelimit_proxy::proxy {

upstream_pool::upstream_pool(boost::asio::io_context& io, boost::asio::ssl::context* tls,
                             upstream_endpoint where, std::chrono::milliseconds connect_timeout,
                             std::size_t max_idle, std::chrono::milliseconds idle_timeout)
    : io_(io),
      tls_(tls),
      where_(std::move(where)),
      connect_timeout_(connect_timeout),
      max_idle_(max_idle),
      idle_timeout_(idle_timeout) {}

// The oldest idle connections sit at the front: close those past the idle timeout, so a
// connection the upstream dropped long ago does not hold a descriptor in CLOSE_WAIT.
void upstream_pool::evict_expired(std::chrono::steady_clock::time_point now) {
    while (!idle_.empty() && now - idle_.front()->idle_since >= idle_timeout_) {
        idle_.front()->close();
        idle_.pop_front();
    }
    count_idle();
}

void upstream_pool::acquire(acquire_handler done, bool probe) {
    const auto now = std::chrono::steady_clock::now();
    evict_expired(now);
    probe = probe || where_.tls;
    while (!idle_.empty()) {
        auto conn = std::move(idle_.back());
        idle_.pop_back();
        if (now - conn->idle_since < idle_timeout_ && conn->usable_when_idle(probe)) {
            stats_.reused.add();
            count_idle();
            done({}, std::move(conn), true);
            return;
        }
        conn->close();
    }
    connect_new(std::move(done));
}

void upstream_pool::connect_new(acquire_handler done) {
    count_idle();
    // The pool belongs to the worker whose io_context runs this: it outlives the connect.
    connect_upstream(io_, tls_, where_, connect_timeout_,
                     [this, done = std::move(done)](beast::error_code ec,
                                                    std::unique_ptr<upstream_connection> conn) {
                         if (ec)
                             stats_.connect_failures.add();
                         else
                             stats_.opened.add();
                         done(ec, std::move(conn), false);
                     });
}

void upstream_pool::release(std::unique_ptr<upstream_connection> conn) {
    if (max_idle_ == 0) {
        conn->close();
        return;
    }
    if (idle_.size() >= max_idle_) {
        idle_.front()->close();
        idle_.pop_front();
    }
    conn->idle_since = std::chrono::steady_clock::now();
    evict_expired(conn->idle_since);
    idle_.push_back(std::move(conn));
    count_idle();
}

void upstream_pool::clear() {
    for (auto& conn : idle_)
        conn->close();
    idle_.clear();
    count_idle();
}

}  // namespace ratelimit_proxy::proxy

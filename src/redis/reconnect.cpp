// The connection's lifecycle: connect (resolving off the event loop, one address after
// another), AUTH and SELECT, and on any failure reconnect with jittered exponential backoff.
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <cmath>
#include <utility>

#include "connection_impl.hpp"

namespace ratelimit_proxy::redis {

namespace asio = boost::asio;

std::string connection::impl::where() const {
    return options_.where.host + ":" + std::to_string(options_.where.port);
}

// Names the address too when the host is a name that resolved to several.
std::string connection::impl::where(const std::string& address) const {
    return address == options_.where.host ? where() : where() + " (" + address + ")";
}

void connection::impl::start() {
    if (started_ && !stopped_)
        return;
    started_ = true;
    stopped_ = false;
    attempts_ = 0;
    // Posted: a context freed from inside a hiredis callback is gone only after it returns.
    asio::post(io_, [w = weak_from_this()] {
        if (auto self = w.lock(); self && !self->stopped_)
            self->connect();
    });
}

void connection::impl::stop() {
    if (!stopped_ && started_)
        spdlog::info("redis {}: stopped", where());
    stopped_ = true;
    reconnect_timer_.cancel();
    connect_timer_.cancel();
    ++attempt_id_;
    resolving_ = false;
    resolver_.cancel();
    if (link_)
        drop_link(*link_, "stopped");
}

// One attempt: the next address of the last lookup, or a fresh lookup when all failed.
void connection::impl::connect() {
    if (stopped_)
        return;
    if (link_ && link_->alive()) {
        schedule_reconnect();
        return;
    }
    auto attempt = ++attempt_id_;
    connect_timer_.expires_after(options_.connect_timeout);
    connect_timer_.async_wait([w = weak_from_this(), attempt](const boost::system::error_code& ec) {
        if (auto self = w.lock(); self && !ec)
            self->on_connect_timeout(attempt);
    });
    if (next_address_ < addresses_.size()) {
        open(addresses_[next_address_++]);
        return;
    }
    addresses_.clear();
    next_address_ = 0;
    const auto& host = options_.where.host;
    boost::system::error_code ec;
    asio::ip::make_address(host, ec);
    if (!ec) {
        addresses_.push_back(host);
        open(addresses_[next_address_++]);
        return;
    }
    // hiredis would call getaddrinfo on this thread and block every request on it;
    // Asio resolves on its own thread.
    resolving_ = true;
    resolver_.async_resolve(
        host, "",
        [w = weak_from_this(), attempt](const boost::system::error_code& ec,
                                        const asio::ip::tcp::resolver::results_type& found) {
            auto self = w.lock();
            if (!self || attempt != self->attempt_id_ || !self->resolving_)
                return;
            self->resolving_ = false;
            if (ec || found.empty()) {
                spdlog::warn("redis {}: cannot resolve host: {}", self->where(),
                             ec ? ec.message() : "no address");
                self->attempt_failed();
                return;
            }
            for (const auto& entry : found) {
                auto address = entry.endpoint().address().to_string();
                if (std::ranges::find(self->addresses_, address) == self->addresses_.end())
                    self->addresses_.push_back(std::move(address));
            }
            self->open(self->addresses_[self->next_address_++]);
        });
}

void connection::impl::on_connect_timeout(std::uint64_t attempt) {
    if (attempt != attempt_id_ || stopped_)
        return;
    auto reason =
        "connect timed out after " + std::to_string(options_.connect_timeout.count()) + " ms";
    if (resolving_) {
        resolving_ = false;
        ++attempt_id_;  // a late lookup result is stale
        resolver_.cancel();
        spdlog::warn("redis {}: {} (resolving the host)", where(), reason);
        attempt_failed();
    } else if (link_ && link_->alive() && !link_->ready_) {
        drop_link(*link_, std::move(reason));
    }
}

// Tries the next address right away; backs off once every address has failed.
void connection::impl::attempt_failed() {
    connect_timer_.cancel();
    if (stopped_)
        return;
    if (next_address_ < addresses_.size()) {
        // Posted: this may run inside hiredis, freeing the previous context.
        asio::post(io_, [w = weak_from_this()] {
            if (auto self = w.lock())
                self->connect();
        });
        return;
    }
    schedule_reconnect();
}

void connection::impl::open(const std::string& address) {
    redisAsyncContext* ac = redisAsyncConnect(address.c_str(), options_.where.port);
    if (!ac) {
        spdlog::warn("redis {}: connect failed: out of memory", where());
        attempt_failed();
        return;
    }
    if (ac->err) {
        spdlog::warn("redis {}: connect failed: {}", where(address), ac->errstr);
        redisAsyncFree(ac);
        attempt_failed();
        return;
    }
    std::shared_ptr<link> l;
    try {
        l = std::make_shared<link>(io_, weak_from_this(), ac, address);
    } catch (const std::exception& e) {
        spdlog::warn("redis {}: connect failed: {}", where(address), e.what());
        redisAsyncFree(ac);
        attempt_failed();
        return;
    }
    ac->data = this;
    l->attach();
    link_ = l;
    // Also arms the write wait whose first event reports the connect result.
    redisAsyncSetConnectCallback(ac, &impl::on_connect);

    // Queued now, sent as soon as the socket is up: saves a round trip.
    const auto& ep = options_.where;
    if (!ep.password.empty()) {
        std::string_view with_user[] = {"AUTH", ep.username, ep.password};
        std::string_view password_only[] = {"AUTH", ep.password};
        handshake_step(*l,
                       ep.username.empty() ? std::span<const std::string_view>(password_only)
                                           : std::span<const std::string_view>(with_user),
                       "AUTH");
    }
    if (ep.db != 0) {
        std::string db = std::to_string(ep.db);
        std::string_view select[] = {"SELECT", db};
        handshake_step(*l, select, "SELECT");
    }
}

void connection::impl::handshake_step(link& l, std::span<const std::string_view> args,
                                      const char* name) {
    if (!l.alive() || l.closing_)
        return;  // an earlier step failed and freed the context
    ++l.handshake_left_;
    reply_handler done = [this, lw = l.weak_link(), name](outcome o, reply&& r) {
        auto l = lw.lock();
        if (o != outcome::ok || !l || !l->alive() || l->closing_)
            return;
        if (r.type == reply_type::error) {
            // Redis's message names the problem, never the password.
            drop_link(*l, std::string(name) + " failed: " + r.str);
            return;
        }
        if (--l->handshake_left_ == 0)
            mark_ready(*l);
    };
    if (!send(l, args, done, no_deadline))
        drop_link(l, std::string(name) + " not sent");
}

void connection::impl::on_connect(const redisAsyncContext* ac, int status) {
    static_cast<impl*>(ac->data)->handle_connect(ac, status);
}

void connection::impl::handle_connect(const redisAsyncContext* ac, int status) {
    if (!link_ || link_->context() != ac)
        return;
    if (status != REDIS_OK) {
        // hiredis frees the context right after this callback.
        link_->closing_ = true;
        link_->close_reason_ = ac->errstr;
        return;
    }
    if (link_->handshake_left_ == 0)
        mark_ready(*link_);
}

void connection::impl::mark_ready(link& l) {
    l.ready_ = true;
    attempts_ = 0;
    if (connected_before_)
        stats_.reconnects.add();
    connected_before_ = true;
    stats_.up.set(1);
    connect_timer_.cancel();
    spdlog::info("redis {}: connected (db {})", where(l.address_), options_.where.db);
    // Posted, so user code never runs inside hiredis's connect callback.
    asio::post(io_, [w = weak_from_this(), lw = l.weak_link()] {
        auto self = w.lock();
        auto l = lw.lock();
        if (!self || !l || self->stopped_ || l != self->link_ || !l->usable())
            return;
        if (auto callback = self->on_connected_)
            callback();
    });
}

// Frees the context; pending handlers get outcome::disconnected (from hiredis, via
// on_reply) and on_closed schedules the reconnect.
void connection::impl::drop_link(link& l, std::string reason) {
    if (!l.alive() || l.closing_)
        return;
    l.closing_ = true;
    l.close_reason_ = std::move(reason);
    redisAsyncFree(l.context());
}

void connection::impl::on_closed(asio_adapter& adapter) {
    if (&adapter != link_.get())
        return;
    link& l = *link_;
    connect_timer_.cancel();
    // hiredis answers every pending callback before cleanup; this only guards against
    // surprises, so no handler is ever lost.
    fail_all_pending();
    stats_.up.set(0);
    if (stopped_)
        return;
    std::string reason = l.close_reason_;
    if (reason.empty())
        reason = l.context()->err ? l.context()->errstr : "connection closed";
    if (l.ready_) {
        spdlog::warn("redis {}: disconnected: {}", where(l.address_), reason);
        // Look the host up again: after a failover the name may point elsewhere.
        addresses_.clear();
        next_address_ = 0;
        schedule_reconnect();
        return;
    }
    spdlog::warn("redis {}: connect failed: {}", where(l.address_), reason);
    attempt_failed();
}

void connection::impl::schedule_reconnect() {
    if (stopped_)
        return;
    using ms = std::chrono::milliseconds;
    double lo = static_cast<double>(options_.reconnect_min.count());
    double hi = std::max(lo, static_cast<double>(options_.reconnect_max.count()));
    double base = std::min(hi, lo * std::pow(2.0, attempts_));
    attempts_ = std::min(attempts_ + 1, 30);
    // Jitter spreads the reconnects of many proxy threads after a Redis restart.
    double delay = std::clamp(base * std::uniform_real_distribution<>(0.75, 1.25)(rng_), lo, hi);
    reconnect_timer_.expires_after(ms(static_cast<ms::rep>(delay)));
    reconnect_timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_)
            return;
        self->connect();
    });
}

}  // namespace ratelimit_proxy::redis

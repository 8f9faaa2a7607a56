#include "ratelimit_proxy/redis/connection.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <deque>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

namespace ratelimit_proxy::redis {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

namespace {

constexpr std::string_view url_form = "redis://[[user]:password@]host[:port][/db]";

bool iequals(std::string_view a, std::string_view b) {
    return std::ranges::equal(a, b, [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) ==
               std::tolower(static_cast<unsigned char>(y));
    });
}

// Messages never quote the URL: it may carry a password.
[[noreturn]] void bad_url(const std::string& what) {
    throw std::invalid_argument("invalid Redis URL: " + what);
}

reply copy_reply(const redisReply& r) {
    reply out;
    switch (r.type) {
        case REDIS_REPLY_STRING:
            out.type = reply_type::string;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = reply_type::status;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_ERROR:
            out.type = reply_type::error;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_INTEGER:
            out.type = reply_type::integer;
            out.integer = r.integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.type = reply_type::array;
            out.elements.reserve(r.elements);
            for (std::size_t i = 0; i < r.elements; ++i)
                out.elements.push_back(copy_reply(*r.element[i]));
            break;
        default:
            out.type = reply_type::nil;
            break;
    }
    return out;
}

}  // namespace

endpoint parse_url(std::string_view url) {
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed)
        bad_url("not a URL (" + parsed.error().message() + "); expected " + std::string(url_form));
    const auto& u = *parsed;

    if (iequals(u.scheme(), "rediss"))
        bad_url("rediss:// (Redis over TLS) is not supported; use redis://");
    if (!iequals(u.scheme(), "redis"))
        bad_url("scheme must be redis://, not " + std::string(u.scheme()) + "://");
    if (!u.has_authority())
        bad_url("expected " + std::string(url_form));
    if (u.has_query())
        bad_url("query parameters are not supported");
    if (u.has_fragment())
        bad_url("a fragment (#...) is not supported");

    endpoint ep;
    if (u.host_type() == boost::urls::host_type::ipvfuture)
        bad_url("IPvFuture host addresses are not supported");
    if (!u.encoded_host().empty())
        ep.host = u.host_address();
    // A decoded %00 or newline would reach getaddrinfo and the logs as part of a host name.
    for (const unsigned char c : ep.host) {
        if (c < 0x21 || c == 0x7f)
            bad_url("the host name contains a control character or space");
    }

    if (u.has_port()) {
        auto text = u.port();
        unsigned value = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value == 0 ||
            value > 65535)
            bad_url("port must be a number from 1 to 65535");
        ep.port = static_cast<std::uint16_t>(value);
    }

    if (u.has_userinfo()) {
        // A lone userinfo is ambiguous (user or password?): the form demands the colon.
        if (!u.has_password())
            bad_url(
                "credentials need a colon: redis://:password@host or redis://user:password@host");
        ep.username = u.user();
        ep.password = u.password();
        if (!ep.username.empty() && ep.password.empty())
            bad_url("user name given without a password");
    }

    std::string path = u.path();
    if (!path.empty() && path != "/") {
        std::string_view digits = std::string_view(path).substr(1);
        int db = -1;
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), db);
        if (path.front() != '/' || ec != std::errc{} || end != digits.data() + digits.size() ||
            db < 0)
            bad_url("database must be a non-negative number, as in redis://host:6379/3");
        ep.db = db;
    }
    return ep;
}

struct connection::impl : std::enable_shared_from_this<impl> {
    // One hiredis context and the Asio waits that drive it. Wait handlers hold it strongly,
    // so it outlives the context; alive_ says whether ac_ may still be touched.
    struct link : std::enable_shared_from_this<link> {
        link(asio::io_context& io, std::weak_ptr<impl> owner, redisAsyncContext* ac,
             std::string address)
            : owner_(std::move(owner)), ac_(ac), fd_(io, ac->c.fd), address_(std::move(address)) {}

        bool usable() const { return alive_ && ready_ && !closing_; }

        void wait_readable() {
            if (read_waiting_ || !alive_)
                return;
            read_waiting_ = true;
            fd_.async_wait(asio::posix::descriptor_base::wait_read,
                           [self = shared_from_this()](const boost::system::error_code& ec) {
                               self->on_ready(ec, true);
                           });
        }

        void wait_writable() {
            if (write_waiting_ || !alive_)
                return;
            write_waiting_ = true;
            fd_.async_wait(asio::posix::descriptor_base::wait_write,
                           [self = shared_from_this()](const boost::system::error_code& ec) {
                               self->on_ready(ec, false);
                           });
        }

        void on_ready(const boost::system::error_code& ec, bool read) {
            (read ? read_waiting_ : write_waiting_) = false;
            bool& wanted = read ? want_read_ : want_write_;
            if (ec == asio::error::operation_aborted || !alive_ || !wanted)
                return;
            // Callbacks below may destroy the connection; keep the impl alive until we return.
            auto owner = owner_.lock();
            if (!owner)
                return;
            // Other errors are left for hiredis to discover on the socket itself.
            if (read) {
                redisAsyncHandleRead(ac_);
            } else {
                owner->writes_.fetch_add(1, std::memory_order_relaxed);
                redisAsyncHandleWrite(ac_);
            }
            // The context may be gone now; hiredis re-adds interest it still has.
            if (alive_ && wanted)
                read ? wait_readable() : wait_writable();
        }

        static void add_read(void* p) {
            auto* l = static_cast<link*>(p);
            l->want_read_ = true;
            l->wait_readable();
        }
        static void del_read(void* p) { static_cast<link*>(p)->want_read_ = false; }
        static void add_write(void* p) {
            auto* l = static_cast<link*>(p);
            l->want_write_ = true;
            l->wait_writable();
        }
        static void del_write(void* p) { static_cast<link*>(p)->want_write_ = false; }
        // Called by hiredis while freeing the context, after every pending reply callback.
        static void cleanup(void* p) {
            auto* l = static_cast<link*>(p);
            l->alive_ = false;
            l->want_read_ = l->want_write_ = false;
            // hiredis closes the fd right after this hook: only deregister it from Asio.
            l->fd_.release();
            if (auto owner = l->owner_.lock())
                owner->on_link_closed(*l);
        }

        std::weak_ptr<impl> owner_;
        redisAsyncContext* ac_;
        asio::posix::stream_descriptor fd_;
        bool alive_ = true;
        bool ready_ = false;    // connected, authenticated, database selected
        bool closing_ = false;  // hiredis is freeing the context, or will after this callback
        bool want_read_ = false;
        bool want_write_ = false;
        bool read_waiting_ = false;
        bool write_waiting_ = false;
        int handshake_left_ = 0;
        std::string close_reason_;
        std::string address_;  // the resolved address this context connected to
    };

    struct pending {
        std::uint64_t seq;
        reply_handler handler;  // empty once timed out: the late reply is dropped
        steady::time_point deadline;
    };

    static constexpr auto no_deadline = steady::time_point::max();

    impl(asio::io_context& io, connection_options options)
        : io_(io),
          options_(std::move(options)),
          command_timer_(io),
          connect_timer_(io),
          reconnect_timer_(io),
          resolver_(io),
          rng_(std::random_device{}()) {}

    ~impl() {
        stopped_ = true;
        if (link_)
            drop_link(*link_, "connection destroyed");
    }

    std::string where() const {
        return options_.where.host + ":" + std::to_string(options_.where.port);
    }
    // Names the address too when the host is a name that resolved to several.
    std::string where(const std::string& address) const {
        return address == options_.where.host ? where() : where() + " (" + address + ")";
    }

    void start() {
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

    void stop() {
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
    void connect() {
        if (stopped_)
            return;
        if (link_ && link_->alive_) {
            schedule_reconnect();
            return;
        }
        auto attempt = ++attempt_id_;
        connect_timer_.expires_after(options_.connect_timeout);
        connect_timer_.async_wait(
            [w = weak_from_this(), attempt](const boost::system::error_code& ec) {
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

    void on_connect_timeout(std::uint64_t attempt) {
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
        } else if (link_ && link_->alive_ && !link_->ready_) {
            drop_link(*link_, std::move(reason));
        }
    }

    // Tries the next address right away; backs off once every address has failed.
    void attempt_failed() {
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

    void open(const std::string& address) {
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
        ac->ev.data = l.get();
        ac->ev.addRead = &link::add_read;
        ac->ev.delRead = &link::del_read;
        ac->ev.addWrite = &link::add_write;
        ac->ev.delWrite = &link::del_write;
        ac->ev.cleanup = &link::cleanup;
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

    void handshake_step(link& l, std::span<const std::string_view> args, const char* name) {
        if (!l.alive_ || l.closing_)
            return;  // an earlier step failed and freed the context
        ++l.handshake_left_;
        reply_handler done = [this, lw = l.weak_from_this(), name](outcome o, reply&& r) {
            auto l = lw.lock();
            if (o != outcome::ok || !l || !l->alive_ || l->closing_)
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

    static void on_connect(const redisAsyncContext* ac, int status) {
        static_cast<impl*>(ac->data)->handle_connect(ac, status);
    }

    void handle_connect(const redisAsyncContext* ac, int status) {
        if (!link_ || link_->ac_ != ac)
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

    void mark_ready(link& l) {
        l.ready_ = true;
        attempts_ = 0;
        connect_timer_.cancel();
        spdlog::info("redis {}: connected (db {})", where(l.address_), options_.where.db);
        // Posted, so user code never runs inside hiredis's connect callback.
        asio::post(io_, [w = weak_from_this(), lw = l.weak_from_this()] {
            auto self = w.lock();
            auto l = lw.lock();
            if (!self || !l || self->stopped_ || l != self->link_ || !l->usable())
                return;
            if (auto callback = self->on_connected_)
                callback();
        });
    }

    // Frees the context; pending handlers get outcome::disconnected (from hiredis, via
    // on_reply) and cleanup schedules the reconnect.
    void drop_link(link& l, std::string reason) {
        if (!l.alive_ || l.closing_)
            return;
        l.closing_ = true;
        l.close_reason_ = std::move(reason);
        redisAsyncFree(l.ac_);
    }

    void on_link_closed(link& l) {
        if (&l != link_.get())
            return;
        connect_timer_.cancel();
        // hiredis answers every pending callback before cleanup; this only guards against
        // surprises, so no handler is ever lost.
        fail_all_pending();
        if (stopped_)
            return;
        std::string reason = l.close_reason_;
        if (reason.empty())
            reason = l.ac_->err ? l.ac_->errstr : "connection closed";
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

    void fail_all_pending() {
        auto left = std::move(pending_);
        pending_.clear();
        expired_ = 0;
        for (auto& p : left)
            if (p.handler)
                asio::post(io_, [h = std::move(p.handler)] { h(outcome::disconnected, reply{}); });
    }

    void schedule_reconnect() {
        if (stopped_)
            return;
        using ms = std::chrono::milliseconds;
        double lo = static_cast<double>(options_.reconnect_min.count());
        double hi = std::max(lo, static_cast<double>(options_.reconnect_max.count()));
        double base = std::min(hi, lo * std::pow(2.0, attempts_));
        attempts_ = std::min(attempts_ + 1, 30);
        // Jitter spreads the reconnects of many proxy threads after a Redis restart.
        double delay =
            std::clamp(base * std::uniform_real_distribution<>(0.75, 1.25)(rng_), lo, hi);
        reconnect_timer_.expires_after(ms(static_cast<ms::rep>(delay)));
        reconnect_timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
            auto self = w.lock();
            if (ec || !self || self->stopped_)
                return;
            self->connect();
        });
    }

    void command(std::span<const std::string_view> args, reply_handler handler) {
        if (args.empty()) {
            reply r;
            r.type = reply_type::error;
            r.str = "ERR empty command";
            asio::post(io_, [h = std::move(handler), r = std::move(r)]() mutable {
                h(outcome::ok, std::move(r));
            });
            return;
        }
        if (!link_ || !link_->usable() ||
            !send(*link_, args, handler, steady::now() + options_.command_timeout))
            asio::post(io_, [h = std::move(handler)] { h(outcome::disconnected, reply{}); });
    }

    // Moves the handler out only when the command was queued.
    bool send(link& l, std::span<const std::string_view> args, reply_handler& handler,
              steady::time_point deadline) {
        // RESP written here into a reused buffer: hiredis' own formatting (sdscatfmt per
        // argument) allocated twice and formatted slowly on every request.
        command_text_.clear();
        append_resp_length('*', args.size());
        for (auto a : args) {
            append_resp_length('$', a.size());
            command_text_.append(a).append("\r\n");
        }
        std::uint64_t seq = next_seq_++;
        // Replies come in command order, so the sequence number only checks that invariant.
        if (redisAsyncFormattedCommand(l.ac_, &impl::on_reply,
                                       reinterpret_cast<void*>(static_cast<std::uintptr_t>(seq)),
                                       command_text_.data(), command_text_.size()) != REDIS_OK)
            return false;
        pending_.push_back({seq, std::move(handler), deadline});
        commands_.fetch_add(1, std::memory_order_relaxed);
        if (deadline != no_deadline)
            arm_command_timer(deadline);
        return true;
    }

    static void on_reply(redisAsyncContext* ac, void* r, void* privdata) {
        static_cast<impl*>(ac->data)->handle_reply(
            static_cast<const redisReply*>(r),
            static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(privdata)));
    }

    void handle_reply(const redisReply* r, std::uint64_t seq) {
        if (pending_.empty() || pending_.front().seq != seq) {
            spdlog::error("redis {}: reply for an unknown command dropped", where());
            return;
        }
        auto handler = std::move(pending_.front().handler);
        pending_.pop_front();
        // A null reply means hiredis is tearing the context down.
        if (!r && link_)
            link_->closing_ = true;
        if (!handler) {
            --expired_;  // timed out before: the late reply is dropped
            return;
        }
        if (r)
            handler(outcome::ok, copy_reply(*r));
        else
            handler(outcome::disconnected, reply{});
    }

    // One timer per connection. Deadlines grow with issue order, so pending_ is sorted by
    // deadline and the timer only needs to wake for the oldest command not yet expired.
    void arm_command_timer(steady::time_point at) {
        if (command_timer_armed_ && command_timer_.expiry() <= at)
            return;
        command_timer_armed_ = true;
        command_timer_.expires_at(at);
        command_timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
            auto self = w.lock();
            if (ec || !self)
                return;
            // A re-arm to an earlier time raced with this expiry: the newer wait is due.
            if (self->command_timer_.expiry() > steady::now())
                return;
            self->command_timer_armed_ = false;
            self->expire_commands();
        });
    }

    void expire_commands() {
        auto now = steady::now();
        boost::container::small_vector<reply_handler, 8> expired;
        while (expired_ < pending_.size() && pending_[expired_].deadline <= now) {
            expired.push_back(std::move(pending_[expired_].handler));
            pending_[expired_].handler = nullptr;
            ++expired_;
        }
        // No reply at all for connect_timeout past a deadline: the server hangs or the
        // connection is half-open, so start over on a fresh one.
        if (expired_ > 0 && link_ && link_->usable() &&
            now - pending_.front().deadline >= options_.connect_timeout)
            drop_link(
                *link_,
                "no reply within " +
                    std::to_string((options_.command_timeout + options_.connect_timeout).count()) +
                    " ms");
        auto next = no_deadline;
        if (expired_ < pending_.size())
            next = pending_[expired_].deadline;
        if (expired_ > 0 && link_ && link_->usable())
            next = std::min(next, pending_.front().deadline + options_.connect_timeout);
        if (next != no_deadline)
            arm_command_timer(next);
        // Last: handlers may issue commands or destroy the connection.
        for (auto& h : expired)
            h(outcome::timeout, reply{});
    }

    asio::io_context& io_;
    connection_options options_;
    std::shared_ptr<link> link_;
    std::deque<pending> pending_;
    std::size_t expired_ = 0;  // pending_[0, expired_) timed out, their replies still due
    std::uint64_t next_seq_ = 0;
    std::string command_text_;  // the command being queued, in RESP; capacity kept

    void append_resp_length(char kind, std::size_t n) {
        char digits[24];
        const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
        command_text_.push_back(kind);
        command_text_.append(digits, end).append("\r\n");
    }
    // Pipelining, observable: commands queued and socket writes that carried them. Atomic
    // only so another thread may read them.
    std::atomic<std::uint64_t> commands_{0};
    std::atomic<std::uint64_t> writes_{0};
    asio::steady_timer command_timer_;
    bool command_timer_armed_ = false;
    asio::steady_timer connect_timer_;
    asio::steady_timer reconnect_timer_;
    int attempts_ = 0;
    bool started_ = false;
    bool stopped_ = false;
    asio::ip::tcp::resolver resolver_;
    bool resolving_ = false;
    std::uint64_t attempt_id_ = 0;  // bumped per attempt, so stale timers and lookups do nothing
    std::vector<std::string> addresses_;  // from the last lookup
    std::size_t next_address_ = 0;
    std::function<void()> on_connected_;
    std::minstd_rand rng_;
};

connection::connection(asio::io_context& io, connection_options options)
    : impl_(std::make_shared<impl>(io, std::move(options))) {}

connection::~connection() {
    // Pending handlers run now, inline: the io_context may never run again.
    auto keep = impl_;
    keep->on_connected_ = nullptr;
    keep->stop();
}

void connection::start() {
    impl_->start();
}

void connection::stop() {
    // A handler called from stop() may destroy this connection.
    auto keep = impl_;
    keep->stop();
}

connection::counters connection::stats() const {
    return {impl_->commands_.load(std::memory_order_relaxed),
            impl_->writes_.load(std::memory_order_relaxed)};
}

bool connection::connected() const {
    return impl_->link_ && impl_->link_->usable();
}

void connection::command(std::span<const std::string_view> args, reply_handler handler) {
    impl_->command(args, std::move(handler));
}

void connection::on_connected(std::function<void()> callback) {
    impl_->on_connected_ = std::move(callback);
}

}  // namespace ratelimit_proxy::redis

#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "asio_adapter.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

struct redisReply;

namespace ratelimit_proxy::redis {

// The connection's state and its two roles: the lifecycle (connect, AUTH/SELECT, reconnect
// with backoff) in reconnect.cpp, and the pipeline (commands, replies, per-command timeouts)
// in pipeline.cpp. The socket itself is driven by asio_adapter.
struct connection::impl final : asio_adapter::owner, std::enable_shared_from_this<impl> {
    using steady = std::chrono::steady_clock;

    // One hiredis context and what the lifecycle knows about it.
    struct link : asio_adapter {
        link(boost::asio::io_context& io, std::weak_ptr<owner> owner, redisAsyncContext* ac,
             std::string address)
            : asio_adapter(io, std::move(owner), ac), address_(std::move(address)) {}

        bool usable() const { return alive() && ready_ && !closing_; }
        std::weak_ptr<link> weak_link() {
            return std::static_pointer_cast<link>(shared_from_this());
        }

        bool ready_ = false;    // connected, authenticated, database selected
        bool closing_ = false;  // hiredis is freeing the context, or will after this callback
        int handshake_left_ = 0;
        std::string close_reason_;
        std::string address_;  // the resolved address this context connected to
    };

    struct pending {
        std::uint64_t seq;
        reply_handler handler;  // empty once timed out: the late reply is dropped
        steady::time_point deadline;
        steady::time_point sent;
    };

    static constexpr auto no_deadline = steady::time_point::max();

    impl(boost::asio::io_context& io, connection_options options);
    ~impl();

    // Lifecycle (reconnect.cpp).
    std::string where() const;
    std::string where(const std::string& address) const;
    void start();
    void stop();
    void connect();
    void on_connect_timeout(std::uint64_t attempt);
    void attempt_failed();
    void open(const std::string& address);
    void handshake_step(link& l, std::span<const std::string_view> args, const char* name);
    static void on_connect(const redisAsyncContext* ac, int status);
    void handle_connect(const redisAsyncContext* ac, int status);
    void mark_ready(link& l);
    void drop_link(link& l, std::string reason);
    void on_closed(asio_adapter& adapter) override;
    void schedule_reconnect();

    // Pipeline (pipeline.cpp).
    void command(std::span<const std::string_view> args, reply_handler handler);
    bool send(link& l, std::span<const std::string_view> args, reply_handler& handler,
              steady::time_point deadline);
    void append_resp_length(char kind, std::size_t n);
    void on_write() override;
    static void on_reply(redisAsyncContext* ac, void* r, void* privdata);
    void handle_reply(const redisReply* r, std::uint64_t seq);
    void arm_command_timer(steady::time_point at);
    void expire_commands();
    void fail_all_pending();

    boost::asio::io_context& io_;
    connection_options options_;
    std::shared_ptr<link> link_;

    // Pipeline state.
    std::deque<pending> pending_;
    std::size_t expired_ = 0;  // pending_[0, expired_) timed out, their replies still due
    std::uint64_t next_seq_ = 0;
    std::string command_text_;  // the command being queued, in RESP; capacity kept
    counters stats_;
    std::uint64_t unwritten_commands_ = 0;  // queued since the last socket write
    bool connected_before_ = false;
    boost::asio::steady_timer command_timer_;
    bool command_timer_armed_ = false;

    // Lifecycle state.
    boost::asio::steady_timer connect_timer_;
    boost::asio::steady_timer reconnect_timer_;
    int attempts_ = 0;
    bool started_ = false;
    bool stopped_ = false;
    boost::asio::ip::tcp::resolver resolver_;
    bool resolving_ = false;
    std::uint64_t attempt_id_ = 0;  // bumped per attempt, so stale timers and lookups do nothing
    std::vector<std::string> addresses_;  // from the last lookup
    std::size_t next_address_ = 0;
    std::function<void()> on_connected_;
    std::minstd_rand rng_;
};

}  // namespace ratelimit_proxy::redis

#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

// Included for the users of the connection: the URL it is given, the replies it hands back,
// and the scripts run on it.
#include "ratelimit_proxy/metrics/cells.hpp"
#include "ratelimit_proxy/redis/endpoint.hpp"
#include "ratelimit_proxy/redis/reply.hpp"
#include "ratelimit_proxy/redis/script.hpp"

namespace boost::asio {
class io_context;
}

namespace ratelimit_proxy::redis {

struct connection_options {
    endpoint where;
    std::chrono::milliseconds command_timeout{50};
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{5000};
};

// One hiredis async connection driven by one io_context thread. Not thread-safe: call
// everything from the thread running that io_context. Reconnects by itself with backoff.
// Commands issued within one loop turn go out in one write (hiredis buffers them).
// Inside src/redis/: reconnect.cpp connects and reconnects, pipeline.cpp carries the commands,
// asio_adapter.cpp drives hiredis's socket from the io_context.
class connection {
  public:
    connection(boost::asio::io_context& io, connection_options options);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // Starts connecting (and AUTH/SELECT when the endpoint says so).
    void start();
    // Disconnects; pending handlers get outcome::disconnected. No reconnect afterwards.
    void stop();
    bool connected() const;

    // What the connection did, written on its thread and readable from any (the scrape).
    // Commands issued in one turn of the event loop share one write, so under load
    // commands / writes is well above 1.
    struct counters {
        metrics::counter_cell commands;
        metrics::counter_cell writes;
        metrics::counter_cell timeouts;
        metrics::counter_cell disconnected;  // commands answered outcome::disconnected
        metrics::counter_cell error_replies;
        metrics::counter_cell reconnects;  // connects after the first
        metrics::gauge_cell up;            // 1 while connected and ready
        metrics::histogram_cell command_seconds{metrics::fast_duration_bounds};
        metrics::histogram_cell commands_per_write{metrics::batch_bounds};
    };
    const counters& stats() const;

    // Sends one command. The handler is always called exactly once, on the io_context
    // thread, never from inside command() itself.
    void command(std::span<const std::string_view> args, reply_handler handler);

    // Called after every successful (re)connect, e.g. to count reconnects.
    void on_connected(std::function<void()> callback);

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace ratelimit_proxy::redis

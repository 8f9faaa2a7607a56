#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace ratelimit_proxy::redis {

// Where to connect, parsed from redis://[[user]:password@]host[:port][/db].
struct endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string username;
    std::string password;
    int db = 0;
};

// Throws std::invalid_argument whose what() says what is wrong with the URL.
endpoint parse_url(std::string_view url);

enum class reply_type { nil, integer, string, status, error, array };

// A reply copied out of hiredis memory, so handlers may keep it.
struct reply {
    reply_type type = reply_type::nil;
    long long integer = 0;
    std::string str;  // string, status and error replies
    std::vector<reply> elements;
};

// ok: the reply is what Redis answered (which may itself be an error reply).
// timeout / disconnected: Redis did not answer in time or the connection is down.
enum class outcome { ok, timeout, disconnected };

using reply_handler = std::function<void(outcome, reply&&)>;

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

    // Commands issued, and the socket writes that carried them: commands issued in one turn of
    // the event loop share one write, so under load commands / writes is well above 1.
    struct counters {
        std::uint64_t commands = 0;
        std::uint64_t writes = 0;
    };
    counters stats() const;

    // Sends one command. The handler is always called exactly once, on the io_context
    // thread, never from inside command() itself.
    void command(std::span<const std::string_view> args, reply_handler handler);

    // Called after every successful (re)connect, e.g. to count reconnects.
    void on_connected(std::function<void()> callback);

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

// A Lua script run by EVALSHA; on NOSCRIPT (Redis restarted, SCRIPT FLUSH) it is sent once
// with EVAL, which also caches it again, so the caller never sees NOSCRIPT.
class script {
  public:
    explicit script(std::string_view source);

    const std::string& sha1() const { return sha1_; }
    const std::string& source() const { return source_; }

    void run(connection& conn, std::span<const std::string_view> keys,
             std::span<const std::string_view> args, reply_handler handler) const;

  private:
    std::string source_;
    std::string sha1_;
};

}  // namespace ratelimit_proxy::redis

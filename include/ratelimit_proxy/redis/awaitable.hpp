#pragma once

// redis::connection's callback API as coroutines (boost::asio::awaitable), for the multi-step
// Redis sequences of the token records and the admin API: neither is on the request path.

#include <boost/asio/awaitable.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::redis {

struct answer {
    redis::outcome outcome = redis::outcome::disconnected;
    redis::reply reply;

    bool ok() const { return outcome == redis::outcome::ok; }
};

// The coroutine resumes through a post to its executor, never inside a connection call: a
// connection being destroyed answers its pending commands inline.
boost::asio::awaitable<answer> await_command(connection& conn,
                                             std::span<const std::string_view> args);

boost::asio::awaitable<answer> await_script(const script& s, connection& conn,
                                            std::span<const std::string_view> keys,
                                            std::span<const std::string_view> args);

// Every command issued in one loop turn (one write: pipelined); the answers in their order.
boost::asio::awaitable<std::vector<answer>> await_pipeline(
    connection& conn, const std::vector<std::vector<std::string>>& commands);

}  // namespace ratelimit_proxy::redis

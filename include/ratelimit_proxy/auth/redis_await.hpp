#pragma once

// redis::connection's callback API as coroutines (boost::asio::awaitable), for the multi-step
// Redis sequences of the token records and the admin API: neither is on the request path.
// Kept here, beside its first user, until redis/ offers the same.

#include <boost/asio/awaitable.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::auth {

struct redis_answer {
    redis::outcome outcome = redis::outcome::disconnected;
    redis::reply reply;

    bool ok() const { return outcome == redis::outcome::ok; }
};

// The coroutine resumes through a post to its executor, never inside a connection call: a
// connection being destroyed answers its pending commands inline.
boost::asio::awaitable<redis_answer> await_command(redis::connection& conn,
                                                   std::span<const std::string_view> args);

boost::asio::awaitable<redis_answer> await_script(const redis::script& s, redis::connection& conn,
                                                  std::span<const std::string_view> keys,
                                                  std::span<const std::string_view> args);

// Every command issued in one loop turn (one write: pipelined); the answers in their order.
boost::asio::awaitable<std::vector<redis_answer>> await_pipeline(
    redis::connection& conn, const std::vector<std::vector<std::string>>& commands);

}  // namespace ratelimit_proxy::auth

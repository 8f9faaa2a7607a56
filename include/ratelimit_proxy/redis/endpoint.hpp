#pragma once

#include <cstdint>
#include <string>
#include <string_view>

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

}  // namespace ratelimit_proxy::redis

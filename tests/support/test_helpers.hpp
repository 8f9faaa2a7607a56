#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http_client.hpp"
#include "redis_server.hpp"

namespace rlp_test {

// The header as a non-negative integer (digits only); nullopt when absent or not an integer.
std::optional<long> header_integer(const http_response& r, std::string_view name);

// Every key of the test Redis and every value under it, as text ("key => value\n"...), for
// "this secret is stored nowhere" checks. Counts the keys into *key_count when given.
std::string dump_redis(const redis_server& redis, std::size_t* key_count = nullptr);

bool contains(std::string_view haystack, std::string_view needle);

// One GET /api/echo with the token on c (opened to port when empty), counted as allowed (200),
// rejected (429) or other (any other status, or an exception). Drops c when it will not be
// reused, so the next call opens a fresh connection.
void count_echo(std::unique_ptr<http_connection>& c, std::uint16_t port, const std::string& token,
                std::atomic<int>& allowed, std::atomic<int>& rejected, std::atomic<int>& other);

// Milliseconds since start.
inline long long elapsed_ms(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start)
        .count();
}

}  // namespace rlp_test

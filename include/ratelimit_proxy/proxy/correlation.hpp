#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ratelimit_proxy::proxy {

// X-Request-Id and W3C trace context (traceparent, tracestate) of one request.

// An incoming X-Request-Id worth keeping: 1 to 128 characters of [A-Za-z0-9._:-].
inline constexpr std::size_t max_request_id_size = 128;
bool valid_request_id(std::string_view id);

// A W3C traceparent (trace-context level 1): "vv-<32 hex trace-id>-<16 hex parent-id>-ff",
// lower-case hex; version not "ff", trace-id and parent-id not all zeros; version 00 exactly
// 55 characters, a later version at least 55 with a '-' after the flags if longer.
bool valid_traceparent(std::string_view value);
// The trace-id of a valid traceparent.
inline std::string_view trace_id_of(std::string_view valid_traceparent) {
    return valid_traceparent.substr(3, 32);
}

// 32 lower-case hex request ids: 16 digits of a per-generator random prefix, then 16 of a
// counter passed through a bijective mixer, so ids never repeat within one generator and
// look unrelated. No system call and no allocation per id.
class request_id_generator {
  public:
    static constexpr std::size_t size = 32;
    request_id_generator(std::uint64_t prefix, std::uint64_t start);
    // Seeded from std::random_device (once).
    request_id_generator();

    void next(std::array<char, size>& out);

  private:
    std::array<char, size / 2> prefix_;  // the prefix's hex digits, written once
    std::uint64_t counter_;
};

}  // namespace ratelimit_proxy::proxy

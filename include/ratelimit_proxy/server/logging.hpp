#pragma once

#include <spdlog/common.h>

#include <chrono>
#include <string>
#include <string_view>

namespace ratelimit_proxy::server {

// The process-wide logger on stdout: level and format ("text" or "json") as configured.
// Synchronous, behind the sink's mutex (see logging.cpp), flushed once a second.
void setup_logging(const std::string& level, const std::string& format);

// Appends s as the inside of a JSON string: quotes, backslashes and control characters
// escaped, and bytes above 0x7f as \u00XX, so a line is valid JSON whatever a client sent.
void append_json_escaped(std::string& out, std::string_view s);

// "2026-12-04T03:55:33.123Z": RFC 3339, UTC, milliseconds.
void append_utc_time(std::string& out, std::chrono::system_clock::time_point t);

// The source location an access line is logged with: the JSON formatter writes such a line
// (already one JSON object) as it is, with the time put first.
// One object, defined in logging.cpp, compared by address: a string literal may have a copy per
// translation unit (clang with AddressSanitizer keeps them apart).
extern const char access_line_source[];
inline spdlog::source_loc access_line_location() {
    return {access_line_source, 0, nullptr};
}

}  // namespace ratelimit_proxy::server

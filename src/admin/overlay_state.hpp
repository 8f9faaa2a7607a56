#pragma once

// Private to src/admin: the stored overlay and its version as Redis returns them, read by
// the overlay poll and by an update.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::admin {

// A version as Redis stores it (INCR): digits. Nil is version 0.
std::optional<std::uint64_t> parse_version(const redis::reply& r);

// The stored overlay: nil is an empty overlay; anything else must be a JSON object. When it
// is not, `problem` says why.
std::optional<nlohmann::json> parse_state(const redis::reply& r, std::string& problem);

}  // namespace ratelimit_proxy::admin

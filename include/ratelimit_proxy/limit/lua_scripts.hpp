#pragma once

#include <string_view>

// Sources of lua/*.lua, embedded at build time.
namespace ratelimit_proxy::lua {
extern const std::string_view token_bucket;
}  // namespace ratelimit_proxy::lua

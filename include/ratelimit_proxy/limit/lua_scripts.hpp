#pragma once

#include <string_view>

// Sources of lua/*.lua, embedded at build time.
namespace ratelimit_proxy::lua {
extern const std::string_view
    policies;  // lua/policies.lua: every algorithm, several policies per call
}  // namespace ratelimit_proxy::lua

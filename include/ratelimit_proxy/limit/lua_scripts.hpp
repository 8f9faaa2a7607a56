#pragma once

#include <string_view>

// Sources of lua/*.lua, embedded at build time.
namespace ratelimit_proxy::lua {
extern const std::string_view
    policies;  // lua/policies.lua: every algorithm, several policies per call
extern const std::string_view
    settle;  // lua/settle.lua: settles, reads and credits metered budgets; usage records
}  // namespace ratelimit_proxy::lua

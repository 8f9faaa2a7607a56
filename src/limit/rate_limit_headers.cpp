#include "ratelimit_proxy/limit/rate_limit_headers.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace ratelimit_proxy::limit {

namespace {
// Rounds up, tolerating float noise from the Lua string round trip (2.0000001 -> 2).
std::int64_t ceil_seconds(double s) {
    if (!(s > 0))
        return 0;
    return static_cast<std::int64_t>(std::ceil(s - 1e-6));
}
}  // namespace

rate_limit_headers make_headers(const decision& d) {
    rate_limit_headers h;
    const policy& p = *d.applied;
    const auto quota = static_cast<std::int64_t>(std::floor(p.capacity));
    const auto remaining = std::clamp<std::int64_t>(d.remaining, 0, quota);
    // A denied client reads Reset and Retry-After together: both say when to come back, so
    // Retry-After is never earlier than the reset the client is shown.
    const auto retry_after = std::max<std::int64_t>(1, ceil_seconds(d.retry_after_seconds));
    const auto reset = d.allowed ? ceil_seconds(d.reset_seconds) : retry_after;
    const auto window = std::max<std::int64_t>(1, ceil_seconds(p.window_seconds()));

    h.limit = std::to_string(quota);
    h.remaining = std::to_string(remaining);
    h.reset = std::to_string(reset);
    h.policy = "\"" + p.name + "\";q=" + h.limit + ";w=" + std::to_string(window);
    h.rate_limit = "\"" + p.name + "\";r=" + h.remaining + ";t=" + h.reset;
    if (!d.allowed)
        h.retry_after = std::to_string(retry_after);
    return h;
}

}  // namespace ratelimit_proxy::limit

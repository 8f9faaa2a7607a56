#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

void decision::choose_tightest() {
    tightest = -1;
    for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        if (r.shadow)
            continue;
        if (tightest < 0) {
            tightest = static_cast<int>(i);
            continue;
        }
        const auto& best = results[static_cast<std::size_t>(tightest)];
        bool better;
        if (!allowed) {
            // The denial that lasts longest is the one the client must wait for.
            better =
                !r.allowed && (best.allowed || r.retry_after_seconds > best.retry_after_seconds);
        } else {
            better = r.remaining < best.remaining ||
                     (r.remaining == best.remaining && r.reset_seconds > best.reset_seconds);
        }
        if (better)
            tightest = static_cast<int>(i);
    }
}

}  // namespace ratelimit_proxy::limit

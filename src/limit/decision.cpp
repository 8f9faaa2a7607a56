#include "ratelimit_proxy/limit/decision.hpp"

#include <limits>

namespace ratelimit_proxy::limit {

namespace {

bool is_metered(const policy_result& r) {
    return r.source && r.source->metered();
}

// How long a denial lasts; a spent lifetime budget never comes back by waiting.
double retry_of(const policy_result& r) {
    if (!r.allowed && !r.held_out && is_metered(r) &&
        r.source->numbers.period == calendar::lifetime)
        return std::numeric_limits<double>::infinity();
    return r.retry_after_seconds;
}

// A share of the quota left, so that budgets in different units compare.
double left_share(const policy_result& r) {
    return r.quota > 0 ? static_cast<double>(r.remaining) / r.quota : 0;
}

// The enforced result the client must heed among those `wanted` takes: when denied, the
// denial that lasts longest; else the one with the least left.
template <typename Wanted>
int tightest_of(const decision& d, Wanted wanted) {
    int tightest = -1;
    for (std::size_t i = 0; i < d.results.size(); ++i) {
        const auto& r = d.results[i];
        if (r.shadow || !wanted(r))
            continue;
        if (tightest < 0) {
            tightest = static_cast<int>(i);
            continue;
        }
        const auto& best = d.results[static_cast<std::size_t>(tightest)];
        bool better;
        if (!d.allowed) {
            better = !r.allowed && (best.allowed || retry_of(r) > retry_of(best));
        } else if (is_metered(r) || is_metered(best)) {
            better = left_share(r) < left_share(best);
        } else {
            better = r.remaining < best.remaining ||
                     (r.remaining == best.remaining && r.reset_seconds > best.reset_seconds);
        }
        if (better)
            tightest = static_cast<int>(i);
    }
    return tightest;
}

}  // namespace

void decision::choose_tightest() {
    tightest = tightest_of(*this, [](const policy_result&) { return true; });
    tightest_request = tightest_of(*this, [](const policy_result& r) { return !is_metered(r); });
    tightest_budget = tightest_of(*this, [](const policy_result& r) { return is_metered(r); });
}

}  // namespace ratelimit_proxy::limit

#include "ratelimit_proxy/limit/deny_cache.hpp"

#include <algorithm>

namespace ratelimit_proxy::limit {

namespace {
double seconds_between(deny_cache::clock::time_point a, deny_cache::clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}
// A budget's answer depends on this request's own cost and on holds that can be given back
// at any moment: checks with a metered item are neither remembered nor answered from here.
bool has_metered(std::span<const check_item> items) {
    for (const auto& item : items)
        if (item.metered)
            return true;
    return false;
}

}  // namespace

void deny_cache::remember(std::span<const check_item> items, const decision& d, double scale,
                          clock::time_point now) {
    if (d.allowed || d.decided_locally || d.store_unavailable || d.results.size() != items.size() ||
        has_metered(items))
        return;
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto& r = d.results[i];
        // A concurrency slot can free at any moment: such a denial is never remembered.
        if (r.shadow || r.allowed || !(r.retry_after_seconds > 0) ||
            items[i].source->algo == algorithm::concurrency)
            continue;
        make_room(now);
        auto& e = entries_[items[i].key];
        e.stored = now;
        e.until = now + std::chrono::duration_cast<clock::duration>(
                            std::chrono::duration<double>(r.retry_after_seconds));
        e.scale = scale;
        e.results = d.results;
        e.denying = i;
    }
}

bool deny_cache::lookup(std::span<const check_item> items, double scale, clock::time_point now,
                        decision& out) const {
    if (entries_.empty() || has_metered(items))
        return false;
    for (const auto& item : items) {
        if (item.shadow)
            continue;
        auto it = entries_.find(item.key);
        if (it == entries_.end())
            continue;
        const entry& e = it->second;
        if (now >= e.until || e.scale != scale)
            continue;
        // The same request shape as the one remembered: report every policy as it was;
        // otherwise only the one known to deny.
        bool same_shape = e.results.size() == items.size();
        for (std::size_t i = 0; same_shape && i < items.size(); ++i)
            same_shape = e.results[i].source == items[i].source;
        out = decision{};
        out.allowed = false;
        if (same_shape) {
            out.results = e.results;
        } else {
            out.results.push_back(e.results[e.denying]);
        }
        const double elapsed = seconds_between(e.stored, now);
        for (auto& r : out.results) {
            r.reset_seconds = std::max(0.0, r.reset_seconds - elapsed);
            r.retry_after_seconds = std::max(0.0, r.retry_after_seconds - elapsed);
        }
        out.choose_tightest();
        return true;
    }
    return false;
}

void deny_cache::make_room(clock::time_point now) {
    if (entries_.size() < max_entries_)
        return;
    std::erase_if(entries_, [now](const auto& kv) { return now >= kv.second.until; });
    if (entries_.size() >= max_entries_)
        entries_.clear();  // bounded; the store still decides correctly
}

}  // namespace ratelimit_proxy::limit

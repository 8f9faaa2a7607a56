#include "ratelimit_proxy/limit/check_items.hpp"

#include <algorithm>

namespace ratelimit_proxy::limit {

namespace {

// Written over the item's numbers in place, so the per-request loop copies nothing twice.
void apply_limits(limits& numbers, const policy& p, const token_overrides* overrides,
                  double scale) {
    numbers = p.numbers;
    if (overrides) {
        if (auto it = overrides->find(p.name); it != overrides->end())
            numbers = it->second.apply(numbers);
    }
    if (scale < 1) {
        numbers.limit = std::max(1.0, numbers.limit * scale);
        if (numbers.burst > 0)
            numbers.burst = std::max(1.0, numbers.burst * scale);
    }
}

}  // namespace

void build_check_items(std::span<const policy* const> policies, const check_subject& s,
                       std::vector<check_item>& items) {
    std::size_t used = 0;
    for (const policy* p : policies) {
        const std::size_t index = used;
        auto& item = used < items.size() ? items[used] : items.emplace_back();
        ++used;
        item.source = p;
        assign_bucket_key(item.key, s.key_prefix, p->name, p->key, s.token_id, s.client_address,
                          s.method, s.path);
        // A budget is what was bought: the emergency and load factors shed requests, they
        // do not spend anybody's money.
        apply_limits(item.numbers, *p, s.overrides, p->metered() ? 1.0 : s.scale);
        item.shadow = p->shadow || s.shadow_all;
        item.lease_id = {};
        item.metered = p->metered();
        if (item.metered) {
            // What the request may use at most, held until it is settled.
            item.cost = index < s.metered_costs.size() ? std::max(0.0, s.metered_costs[index]) : 0;
            item.hold_id = s.hold_id;
            item.hold_seconds = s.hold_seconds;
        } else {
            item.cost = p->cost;
            item.hold_id = {};
            item.hold_seconds = 0;
        }
        if (p->algo == algorithm::concurrency) {
            item.numbers.window_seconds = s.lease_seconds;
            item.numbers.burst = 0;
            item.lease_id = s.lease_id;
        }
    }
    items.resize(used);
}

}  // namespace ratelimit_proxy::limit

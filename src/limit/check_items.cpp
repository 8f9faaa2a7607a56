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
        auto& item = used < items.size() ? items[used] : items.emplace_back();
        ++used;
        item.source = p;
        assign_bucket_key(item.key, s.key_prefix, p->name, p->key, s.token_id, s.client_address,
                          s.method, s.path);
        apply_limits(item.numbers, *p, s.overrides, s.scale);
        item.cost = p->cost;
        item.shadow = p->shadow || s.shadow_all;
        item.lease_id = {};
        if (p->algo == algorithm::concurrency) {
            item.numbers.window_seconds = s.lease_seconds;
            item.numbers.burst = 0;
            item.lease_id = s.lease_id;
        }
    }
    items.resize(used);
}

}  // namespace ratelimit_proxy::limit

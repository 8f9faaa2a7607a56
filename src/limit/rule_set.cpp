#include "ratelimit_proxy/limit/rule_set.hpp"

#include <utility>

#include "ratelimit_proxy/limit/name_slots.hpp"

namespace ratelimit_proxy::limit {

std::string_view to_string(registration_mode m) {
    switch (m) {
        case registration_mode::open:
            return "open";
        case registration_mode::secret:
            return "secret";
        case registration_mode::closed:
            return "closed";
    }
    return "open";
}

std::optional<registration_mode> registration_mode_from(std::string_view s) {
    if (s == "open")
        return registration_mode::open;
    if (s == "secret")
        return registration_mode::secret;
    if (s == "closed")
        return registration_mode::closed;
    return std::nullopt;
}

limits limits_override::apply(limits base) const {
    if (limit)
        base.limit = *limit;
    if (window_seconds) {
        base.window_seconds = *window_seconds;
        base.period = limit::calendar::none;  // an explicit length replaces the calendar month
    }
    if (burst)
        base.burst = *burst;
    return base;
}

void rule_set::select(std::string_view tier, std::string_view method, std::string_view path,
                      std::vector<const policy*>& out) const {
    out.clear();
    const auto* t = tier_for(tier);
    if (!t)
        return;
    for (const policy* p : tier_policies_[static_cast<std::size_t>(t - tiers_.data())])
        if (p->matches(method, path))
            out.push_back(p);
}

const tier* rule_set::tier_for(std::string_view name) const {
    if (tiers_.empty())
        return nullptr;
    for (const auto& t : tiers_)
        if (t.name == name)
            return &t;
    return &tiers_[default_tier_index_];
}

const policy* rule_set::route_of(std::string_view method, std::string_view path) const {
    for (const policy* p : routed_)
        if (p->matches(method, path))
            return p;
    return nullptr;
}

access rule_set::classify(std::string_view token_id, const boost::asio::ip::address& client) const {
    if ((!token_id.empty() && block_tokens_.contains(token_id)) || block_networks_.contains(client))
        return access::block;
    if ((!token_id.empty() && bypass_tokens_.contains(token_id)) ||
        bypass_networks_.contains(client))
        return access::bypass;
    return access::normal;
}

bool rule_set::address_blocked(const boost::asio::ip::address& client) const {
    return block_networks_.contains(client);
}

const policy* rule_set::find_policy(std::string_view name) const {
    for (const auto& p : policies_)
        if (p.name == name)
            return &p;
    return nullptr;
}

const tier* rule_set::find_tier(std::string_view name) const {
    for (const auto& t : tiers_)
        if (t.name == name)
            return &t;
    return nullptr;
}

rule_set::rule_set(rule_definitions d)
    : policies_(std::move(d.policies)),
      tiers_(std::move(d.tiers)),
      default_tier_(std::move(d.default_tier)),
      bypass_(std::move(d.bypass)),
      block_(std::move(d.block)),
      override_(d.override_state),
      registration_(std::move(d.registration)),
      shadow_all_(d.shadow_all),
      pricing_(std::move(d.pricing)),
      version_(d.version) {
    for (auto& p : policies_) {
        p.slot = policy_slots().slot(p.name);
        if (!p.match.method.empty() || !p.match.path_prefix.empty())
            routed_.push_back(&p);
    }
    for (auto& t : tiers_)
        t.slot = tier_slots().slot(t.name);
    for (std::size_t i = 0; i < tiers_.size(); ++i) {
        std::vector<const policy*> resolved;
        for (const auto& name : tiers_[i].policies)
            resolved.push_back(find_policy(name));
        tier_policies_.push_back(std::move(resolved));
        if (tiers_[i].name == default_tier_)
            default_tier_index_ = i;
    }
    for (const auto& c : bypass_.cidrs)
        bypass_networks_.add(c);
    for (const auto& c : block_.cidrs)
        block_networks_.add(c);
    bypass_tokens_.insert(bypass_.token_ids.begin(), bypass_.token_ids.end());
    block_tokens_.insert(block_.token_ids.begin(), block_.token_ids.end());
}

}  // namespace ratelimit_proxy::limit

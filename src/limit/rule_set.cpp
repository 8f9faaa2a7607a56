#include "ratelimit_proxy/limit/rule_set.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "../config/json_reader.hpp"
#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"

namespace ratelimit_proxy::limit {

namespace {

using config::config_error;
using json = nlohmann::json;

template <class T>
auto find_named(std::vector<T>& v, std::string_view name) {
    return std::find_if(v.begin(), v.end(), [&](const T& x) { return x.name == name; });
}

// Applies one "name -> object | null" member of the overlay to `items`: null deletes, an
// object replaces the item of that name in place or is appended.
template <class T, class Read>
void merge_named(std::vector<T>& items, const json& v, const std::string& field, Read read) {
    if (!v.is_object())
        throw config_error(field, "expected an object: name -> definition or null");
    for (auto it = v.begin(); it != v.end(); ++it) {
        const std::string path = field + "." + it.key();
        if (!config::is_valid_name(it.key()))
            throw config_error(path, "names must be 1-64 characters of A-Z a-z 0-9 _ . -");
        auto existing = find_named(items, it.key());
        if (it.value().is_null()) {
            if (existing != items.end())
                items.erase(existing);
            continue;
        }
        T item = read(it.key(), it.value(), path);
        if (existing != items.end())
            *existing = std::move(item);
        else
            items.push_back(std::move(item));
    }
}

std::string join_names(const std::vector<tier>& tiers) {
    std::string out;
    for (const auto& t : tiers)
        out += (out.empty() ? "" : ", ") + t.name;
    return out;
}

}  // namespace

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
        base.calendar_month = false;  // an explicit length replaces the calendar month
    }
    if (burst)
        base.burst = *burst;
    return base;
}

void rule_set::select(std::string_view tier, std::string_view method, std::string_view path,
                      std::vector<const policy*>& out) const {
    out.clear();
    if (tiers_.empty())
        return;
    std::size_t index = default_tier_index_;
    for (std::size_t i = 0; i < tiers_.size(); ++i) {
        if (tiers_[i].name == tier) {
            index = i;
            break;
        }
    }
    for (const policy* p : tier_policies_[index])
        if (p->matches(method, path))
            out.push_back(p);
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

std::shared_ptr<const rule_set> build_rule_set(const config::settings& file, const json& overlay,
                                               std::uint64_t version) {
    auto rs = std::make_shared<rule_set>();
    rs->policies_ =
        file.policies.empty() ? std::vector<policy>{config::default_policy(file)} : file.policies;
    rs->tiers_ = file.tiers;
    rs->default_tier_ = file.default_tier;
    rs->bypass_ = file.bypass;
    rs->block_ = file.block;
    rs->registration_ = file.registration;
    rs->shadow_all_ = file.shadow_mode;
    rs->version_ = version;

    if (!overlay.is_null()) {
        if (!overlay.is_object())
            throw config_error("overlay", "expected an object");
        config::detail::object_reader r(overlay, "");
        r.field("policies",
                [&](const json& v, const std::string& field) {
                    merge_named(
                        rs->policies_, v, field,
                        [](const std::string& name, const json& j, const std::string& path) {
                            policy p = config::policy_from_json(j, path);
                            if (!p.name.empty() && p.name != name)
                                throw config_error(
                                    path + ".name",
                                    "must be \"" + name + "\" (the key it is stored under)");
                            p.name = name;
                            return p;
                        });
                })
            .field("tiers",
                   [&](const json& v, const std::string& field) {
                       merge_named(rs->tiers_, v, field, &config::tier_from_json);
                   })
            .field("default_tier", config::detail::string_into(rs->default_tier_))
            .field("bypass",
                   [&](const json& v, const std::string& field) {
                       rs->bypass_ = config::access_list_from_json(v, field);
                   })
            .field("block",
                   [&](const json& v, const std::string& field) {
                       rs->block_ = config::access_list_from_json(v, field);
                   })
            .field("override",
                   [&](const json& v, const std::string& field) {
                       rs->override_ = config::override_from_json(v, field);
                   })
            .field("registration",
                   [&](const json& v, const std::string& field) {
                       rs->registration_ = config::registration_from_json(v, field);
                   })
            .field("shadow_mode", config::detail::bool_into(rs->shadow_all_));
        r.reject_unknown();
    }

    // Validate the whole, wherever each piece came from.
    std::set<std::string_view> names;
    for (std::size_t i = 0; i < rs->policies_.size(); ++i) {
        auto& p = rs->policies_[i];
        const bool named = config::is_valid_name(p.name);
        const std::string path =
            named ? "policies." + p.name : "policies[" + std::to_string(i) + "]";
        config::validate_policy(p, path);
        if (!names.insert(p.name).second)
            throw config_error(path, "two policies have this name");
        p.counters = std::make_shared<policy_counters>(config::worker_threads(file));
    }

    if (!config::is_valid_name(rs->default_tier_))
        throw config_error("default_tier", "must be 1-64 characters of A-Z a-z 0-9 _ . -");
    if (rs->tiers_.empty()) {
        tier implicit{rs->default_tier_, {}};
        for (const auto& p : rs->policies_)
            implicit.policies.push_back(p.name);
        rs->tiers_.push_back(std::move(implicit));
    }
    std::set<std::string_view> tier_names;
    bool default_found = false;
    for (std::size_t i = 0; i < rs->tiers_.size(); ++i) {
        const auto& t = rs->tiers_[i];
        const std::string path = "tiers." + t.name;
        if (!config::is_valid_name(t.name))
            throw config_error("tiers[" + std::to_string(i) + "]",
                               "tier names must be 1-64 characters of A-Z a-z 0-9 _ . -");
        if (!tier_names.insert(t.name).second)
            throw config_error(path, "two tiers have this name");
        std::vector<const policy*> resolved;
        for (const auto& name : t.policies) {
            const policy* p = rs->find_policy(name);
            if (!p)
                throw config_error(path + ".policies", "no policy named \"" + name + "\"");
            // Listed twice, a request would be charged twice.
            if (std::find(resolved.begin(), resolved.end(), p) != resolved.end())
                throw config_error(path + ".policies", "lists \"" + name + "\" twice");
            resolved.push_back(p);
        }
        rs->tier_policies_.push_back(std::move(resolved));
        if (t.name == rs->default_tier_) {
            rs->default_tier_index_ = i;
            default_found = true;
        }
    }
    if (!default_found)
        throw config_error("default_tier", "no tier named \"" + rs->default_tier_ +
                                               "\" (tiers: " + join_names(rs->tiers_) + ")");

    config::validate_access_list(rs->bypass_, "bypass");
    config::validate_access_list(rs->block_, "block");
    for (const auto& c : rs->bypass_.cidrs)
        rs->bypass_networks_.add(c);
    for (const auto& c : rs->block_.cidrs)
        rs->block_networks_.add(c);
    rs->bypass_tokens_.insert(rs->bypass_.token_ids.begin(), rs->bypass_.token_ids.end());
    rs->block_tokens_.insert(rs->block_.token_ids.begin(), rs->block_.token_ids.end());
    config::validate_override(rs->override_, "override");
    config::validate_registration(rs->registration_, "registration");
    return rs;
}

}  // namespace ratelimit_proxy::limit

#include "ratelimit_proxy/config/rule_overlay.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>
#include <string_view>

#include "json_reader.hpp"
#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"

namespace ratelimit_proxy::config {

namespace {

using detail::bool_into;
using detail::indexed;
using detail::json;
using detail::object_reader;
using detail::string_into;

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
        if (!is_valid_name(it.key()))
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

// The overlay's "pricing": model -> price (set) or null (deleted, also one of the file's).
void merge_prices(metering::price_table& table, const json& v, const std::string& field) {
    if (!v.is_object())
        throw config_error(field, "expected an object: model -> price or null");
    metering::price_table merged;
    for (const auto& [model, price] : table.entries())
        if (!v.contains(model))
            merged.set(model, price);
    for (auto it = v.begin(); it != v.end(); ++it) {
        const std::string path = field + "." + it.key();
        if (!is_valid_model_pattern(it.key()))
            throw config_error(path,
                               "must be a model name of 1-128 characters without control "
                               "characters, or a prefix ending in '*'");
        if (!it.value().is_null())
            merged.set(it.key(), price_from_json(it.value(), path));
    }
    table = std::move(merged);
}

std::string join_names(const std::vector<limit::tier>& tiers) {
    std::string out;
    for (const auto& t : tiers)
        out += (out.empty() ? "" : ", ") + t.name;
    return out;
}

void apply_overlay(limit::rule_definitions& d, const json& overlay) {
    if (!overlay.is_object())
        throw config_error("overlay", "expected an object");
    object_reader r(overlay, "");
    r.field("policies",
            [&](const json& v, const std::string& field) {
                merge_named(d.policies, v, field,
                            [](const std::string& name, const json& j, const std::string& path) {
                                limit::policy p = policy_from_json(j, path);
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
                   merge_named(d.tiers, v, field, &tier_from_json);
               })
        .field("default_tier", string_into(d.default_tier))
        .field("bypass",
               [&](const json& v, const std::string& field) {
                   d.bypass = access_list_from_json(v, field);
               })
        .field("block",
               [&](const json& v, const std::string& field) {
                   d.block = access_list_from_json(v, field);
               })
        .field("override",
               [&](const json& v, const std::string& field) {
                   d.override_state = override_from_json(v, field);
               })
        .field("registration",
               [&](const json& v, const std::string& field) {
                   d.registration = registration_from_json(v, field);
               })
        .field("shadow_mode", bool_into(d.shadow_all))
        .field("pricing",
               [&](const json& v, const std::string& field) { merge_prices(d.pricing, v, field); });
    r.reject_unknown();
}

// Everything rule_definitions promises, wherever each piece came from.
void check_whole(limit::rule_definitions& d, unsigned workers) {
    std::set<std::string_view> names;
    for (std::size_t i = 0; i < d.policies.size(); ++i) {
        auto& p = d.policies[i];
        const bool named = is_valid_name(p.name);
        const std::string path = named ? "policies." + p.name : indexed("policies", i);
        validate_policy(p, path);
        if (!names.insert(p.name).second)
            throw config_error(path, "two policies have this name");
        p.counters = std::make_shared<limit::policy_counters>(workers);
    }

    if (!is_valid_name(d.default_tier))
        throw config_error("default_tier", "must be 1-64 characters of A-Z a-z 0-9 _ . -");
    if (d.tiers.empty()) {
        limit::tier implicit{d.default_tier, {}};
        for (const auto& p : d.policies)
            implicit.policies.push_back(p.name);
        d.tiers.push_back(std::move(implicit));
    }
    std::set<std::string_view> tier_names;
    bool default_found = false;
    for (std::size_t i = 0; i < d.tiers.size(); ++i) {
        const auto& t = d.tiers[i];
        const std::string path = "tiers." + t.name;
        if (!is_valid_name(t.name))
            throw config_error(indexed("tiers", i),
                               "tier names must be 1-64 characters of A-Z a-z 0-9 _ . -");
        if (!tier_names.insert(t.name).second)
            throw config_error(path, "two tiers have this name");
        std::set<std::string_view> listed;
        for (const auto& name : t.policies) {
            if (!names.contains(name))
                throw config_error(path + ".policies", "no policy named \"" + name + "\"");
            // Listed twice, a request would be charged twice.
            if (!listed.insert(name).second)
                throw config_error(path + ".policies", "lists \"" + name + "\" twice");
        }
        default_found = default_found || t.name == d.default_tier;
    }
    if (!default_found)
        throw config_error("default_tier", "no tier named \"" + d.default_tier +
                                               "\" (tiers: " + join_names(d.tiers) + ")");

    validate_access_list(d.bypass, "bypass");
    validate_access_list(d.block, "block");
    validate_override(d.override_state, "override");
    validate_registration(d.registration, "registration");
    validate_pricing(d.pricing, "pricing");
}

}  // namespace

std::shared_ptr<const limit::rule_set> build_rule_set(const settings& file, const json& overlay,
                                                      std::uint64_t version) {
    limit::rule_definitions d;
    d.policies =
        file.policies.empty() ? std::vector<limit::policy>{default_policy(file)} : file.policies;
    d.tiers = file.tiers;
    d.default_tier = file.default_tier;
    d.bypass = file.bypass;
    d.block = file.block;
    d.registration = file.registration;
    d.shadow_all = file.shadow_mode;
    d.pricing = file.pricing;
    d.version = version;
    if (!overlay.is_null())
        apply_overlay(d, overlay);
    check_whole(d, worker_threads(file));
    return std::make_shared<const limit::rule_set>(std::move(d));
}

}  // namespace ratelimit_proxy::config

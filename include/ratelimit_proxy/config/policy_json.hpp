#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>

#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"

namespace ratelimit_proxy::config {

// JSON forms shared by the config file and the admin API. Readers throw config_error naming
// the field under `path` (e.g. "policies.burst"); unknown fields are errors.
//
// policy: { "name", "algorithm": "token_bucket"|"gcra"|"sliding_window"|"fixed_window",
//           "limit": n, "window": seconds | "second"|"minute"|"hour"|"day"|"month",
//           "burst": n (token_bucket, gcra), "key": "global"|"ip"|"token"|"token_route",
//           "match": { "method": "POST", "path_prefix": "/api/chat" }, "cost": n,
//           "shadow": bool, "fail_closed": bool }
// "month" is only valid for fixed_window (a UTC calendar month); "day" etc. are fixed lengths
// aligned to the Unix epoch, so a fixed_window "day" resets at midnight UTC.
// "limit" and "window" are required. "name" may be left out where the caller knows it (the
// overlay's key, an admin URL): the result's name is then empty and the caller sets it.
limit::policy policy_from_json(const nlohmann::json& j, const std::string& path);
nlohmann::json policy_to_json(const limit::policy& p);

limit::tier tier_from_json(const std::string& name, const nlohmann::json& j,
                           const std::string& path);
nlohmann::json tier_to_json(const limit::tier& t);

limit::access_list access_list_from_json(const nlohmann::json& j, const std::string& path);
nlohmann::json access_list_to_json(const limit::access_list& a);

limit::limits_override limits_override_from_json(const nlohmann::json& j, const std::string& path);
limit::token_overrides token_overrides_from_json(const nlohmann::json& j, const std::string& path);
nlohmann::json token_overrides_to_json(const limit::token_overrides& o);

limit::emergency_override override_from_json(const nlohmann::json& j, const std::string& path);
nlohmann::json override_to_json(const limit::emergency_override& o);

limit::registration_control registration_from_json(const nlohmann::json& j,
                                                   const std::string& path);
// Never includes the secret.
nlohmann::json registration_to_json(const limit::registration_control& r);

// 1-64 characters of [A-Za-z0-9_.-]: policy and tier names go into headers and Redis keys.
bool is_valid_name(std::string_view name);

// The checks the readers make, for values built otherwise (config structs, the overlay's
// merge). Fields are named under `path` as the readers name them.
void validate_policy(const limit::policy& p, const std::string& path);
void validate_access_list(const limit::access_list& a, const std::string& path);
void validate_registration(const limit::registration_control& r, const std::string& path);
void validate_override(const limit::emergency_override& o, const std::string& path);

}  // namespace ratelimit_proxy::config

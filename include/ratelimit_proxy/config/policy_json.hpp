#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/metering/pricing.hpp"

namespace ratelimit_proxy::config {

// JSON forms shared by the config file and the admin API. Readers throw config_error naming
// the field under `path` (e.g. "policies.burst"); unknown fields are errors.
//
// policy: { "name", "algorithm": "token_bucket"|"gcra"|"sliding_window"|"fixed_window"|
//                         "concurrency",
//           "limit": n, "window": seconds | "second"|"minute"|"hour"|"day"|"week"|"month"|
//                                 "lifetime",
//           "burst": n (token_bucket, gcra), "key": "global"|"ip"|"token"|"token_route",
//           "match": { "method": "POST", "path_prefix": "/api/chat", "model": "gpt-4o*" },
//           "cost": n, "meter": "requests"|"tokens"|"usd", "count": "total"|"input"|"output",
//           "shadow": bool, "fail_closed": bool }
// "week" (from Monday 00:00 UTC), "month" (a UTC calendar month) and "lifetime" (never
// resets) are only valid for fixed_window; "day" etc. are fixed lengths aligned to the Unix
// epoch, so a fixed_window "day" resets at midnight UTC.
// Metered policies ("meter" tokens or usd) have no "cost" (what a request takes is its
// usage); "count" is for tokens only (default total). A tokens "limit" (and "burst") is whole
// tokens; a usd "limit" is USD in JSON (at most 9 decimals) and nano-USD in limits::limit
// (exact: 1.5 is 1500000000). usd needs fixed_window; concurrency is never metered.
// "fail_closed" left out is kept unset: the limiter then makes a usd budget fail closed (a
// local share of a money budget is no budget) and the others follow FAIL_CLOSED.
// "limit" and "window" are required. "name" may be left out where the caller knows it (the
// overlay's key, an admin URL): the result's name is then empty and the caller sets it.
limit::policy policy_from_json(const nlohmann::json& j, const std::string& path);
nlohmann::json policy_to_json(const limit::policy& p);

limit::tier tier_from_json(const std::string& name, const nlohmann::json& j,
                           const std::string& path);
nlohmann::json tier_to_json(const limit::tier& t);

limit::access_list access_list_from_json(const nlohmann::json& j, const std::string& path);
nlohmann::json access_list_to_json(const limit::access_list& a);

// Per-token overrides. With `m` usd the "limit" is USD in JSON and nano-USD in the result
// (as a policy's); with tokens it is whole tokens. token_overrides_*_json take the meter of
// each policy from `rules` (null, or a policy it lacks: requests, the numbers as they are:
// the form the token records store, which is the in-memory one).
limit::limits_override limits_override_from_json(const nlohmann::json& j, const std::string& path,
                                                 limit::meter m = limit::meter::requests);
limit::token_overrides token_overrides_from_json(const nlohmann::json& j, const std::string& path,
                                                 const limit::rule_set* rules = nullptr);
nlohmann::json token_overrides_to_json(const limit::token_overrides& o,
                                       const limit::rule_set* rules = nullptr);

// Prices, USD per million tokens in JSON: {"input": 0.15, "cached_input": 0.075,
// "cache_write": 0.1875, "output": 0.60}; input and output required, cached_input and
// cache_write default to input. A table: {"<model or prefix*>": price, ...}.
metering::price price_from_json(const nlohmann::json& j, const std::string& path);
nlohmann::json price_to_json(const metering::price& p);
metering::price_table pricing_from_json(const nlohmann::json& j, const std::string& path);
nlohmann::json pricing_to_json(const metering::price_table& t);
// A model name or a prefix: 1-128 characters, no control characters, '*' only at the end.
bool is_valid_model_pattern(std::string_view model);
// USD (a JSON number, at most 9 decimals, not negative) to nano-USD, exactly; nullopt if it
// has more decimals, is negative or not a number, or is above max_usd.
std::optional<std::int64_t> nano_usd_from_json(const nlohmann::json& v);
// The reverse, for answers: 1500000000 -> 1.5 (an integer when whole).
nlohmann::json usd_json_from_nano(double nano_usd);
// The largest USD amount a budget may hold: its nano-USD must stay exact in a double.
inline constexpr double max_usd = 9'000'000;

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
void validate_price(const metering::price& p, const std::string& path);
// Every model name valid, every price valid; fields named "<path>.<model>.<field>".
void validate_pricing(const metering::price_table& t, const std::string& path);

}  // namespace ratelimit_proxy::config

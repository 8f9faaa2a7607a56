#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>

#include "ratelimit_proxy/limit/rule_set.hpp"

namespace ratelimit_proxy::config {

struct settings;

// The config file's rules with the admin overlay applied on top. The file's policies are
// default_policy(file) when it has none; without any tier, one tier named after the default
// tier holds every policy (and is listed by tiers()). Every policy gets fresh counters. The
// overlay is a JSON object (or null: none), every member optional:
//   "policies":     { name: policy object | null (deleted) }  (added, replaced in place,
//                   or deleted; the object's "name", if given, must be the key)
//   "tiers":        { name: { "policies": [names] } | null }
//   "default_tier": name
//   "bypass", "block": { "tokens": [ids], "cidrs": [cidrs] }   (replace the file's lists)
//   "override":     { "factor": 0.5, "block_all": false }
//   "registration": { "mode": "open"|"secret"|"closed", "secret": "...", "per_ip_per_minute": 10 }
//   "shadow_mode":  bool
//   "pricing":      { model (or prefix*): price object | null (deleted, the file's too) }
// Throws config_error naming the bad field (e.g. "policies.burst.limit", or
// "tiers.pro.policies" for a tier naming a policy that does not exist).
std::shared_ptr<const limit::rule_set> build_rule_set(const settings& file,
                                                      const nlohmann::json& overlay,
                                                      std::uint64_t version = 0);

}  // namespace ratelimit_proxy::config

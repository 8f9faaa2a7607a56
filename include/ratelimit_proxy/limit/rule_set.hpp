#pragma once

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/common/cidr.hpp"
#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/metering/pricing.hpp"

namespace ratelimit_proxy::limit {

// A named set of policies (free / pro / enterprise). A token's tier picks what applies to it.
struct tier {
    std::string name;
    std::vector<std::string> policies;  // policy names
    std::uint16_t slot = 0;             // tier_slots() (name_slots.hpp): set by the rule set
};

// Tokens (by id: the 16-hex prefix of the token's SHA-256, as the admin API lists them) and
// client networks (CIDR) that skip limits, or that are always refused with 403.
struct access_list {
    std::vector<std::string> token_ids;
    std::vector<std::string> cidrs;
};

enum class access { normal, bypass, block };

// Emergency override: every limit multiplied by factor (0 < factor <= 1), or all non-bypass
// traffic refused, on every instance, until lifted.
struct emergency_override {
    double factor = 1;
    bool block_all = false;
    bool active() const { return block_all || factor < 1; }
};

enum class registration_mode { open, secret, closed };

std::string_view to_string(registration_mode m);  // "open", "secret", "closed"
std::optional<registration_mode> registration_mode_from(std::string_view s);

struct registration_control {
    registration_mode mode = registration_mode::open;
    std::string secret;             // for mode secret: sent as X-Registration-Secret
    double per_ip_per_minute = 60;  // POST /register is itself limited per client IP
};

// Per-token replacement numbers for one policy; unset fields keep the policy's.
struct limits_override {
    std::optional<double> limit;
    std::optional<double> window_seconds;
    std::optional<double> burst;
    limits apply(limits base) const;
};
using token_overrides = std::map<std::string, limits_override, std::less<>>;  // by policy name

// What a rule_set is made of, already checked as a whole: names unique and valid, every tier
// naming existing policies once, the default tier among the tiers (which are not empty), token
// ids and CIDRs well-formed, and every policy with its counters. config::build_rule_set
// (the config file plus the admin overlay) makes them.
struct rule_definitions {
    std::vector<policy> policies;
    std::vector<tier> tiers;
    std::string default_tier;
    access_list bypass;
    access_list block;
    emergency_override override_state;
    registration_control registration;
    bool shadow_all = false;
    metering::price_table pricing;  // the config file's, with the overlay's changes
    std::uint64_t version = 0;      // of the admin overlay (0: the config file alone)
};

// Everything that decides which limits apply. Immutable; a change builds a new one and every
// worker swaps it in.
class rule_set {
  public:
    // Resolves the tiers' policy names and indexes the lists for lookups per request.
    explicit rule_set(rule_definitions d);
    // tier_policies_ points into policies_: a copy would point into the original.
    rule_set(const rule_set&) = delete;
    rule_set& operator=(const rule_set&) = delete;

    // The policies of the tier (the default tier's if `tier` is unknown) that match the
    // request, in the tier's order. `path` is the request path as the client sent it.
    // Replaces the contents of `out`.
    void select(std::string_view tier, std::string_view method, std::string_view path,
                std::vector<const policy*>& out) const;
    // The tier a token of tier `name` gets: that one, or the default tier if it is unknown.
    // Null only without tiers.
    const tier* tier_for(std::string_view name) const;
    // The first policy with a route match (method or path prefix) that matches: what the
    // metrics call the request's route. Null when none does.
    const policy* route_of(std::string_view method, std::string_view path) const;

    // Block wins over bypass; a token id or a client address on either list counts.
    access classify(std::string_view token_id, const boost::asio::ip::address& client) const;
    bool address_blocked(const boost::asio::ip::address& client) const;

    const policy* find_policy(std::string_view name) const;
    const std::vector<policy>& policies() const { return policies_; }
    const std::vector<tier>& tiers() const { return tiers_; }
    const tier* find_tier(std::string_view name) const;
    const std::string& default_tier() const { return default_tier_; }
    const access_list& bypass() const { return bypass_; }
    const access_list& block() const { return block_; }
    const emergency_override& override_state() const { return override_; }
    const registration_control& registration() const { return registration_; }
    bool shadow_all() const { return shadow_all_; }
    const metering::price_table& pricing() const { return pricing_; }
    // The admin overlay version this was built from (0: the config file alone).
    std::uint64_t version() const { return version_; }

  private:
    std::vector<policy> policies_;
    std::vector<tier> tiers_;
    std::vector<std::vector<const policy*>> tier_policies_;  // parallel to tiers_
    std::string default_tier_;
    std::size_t default_tier_index_ = 0;  // into tiers_
    std::vector<const policy*> routed_;   // the policies with a route match, in order
    access_list bypass_;
    access_list block_;
    common::cidr_set bypass_networks_;
    common::cidr_set block_networks_;
    std::set<std::string, std::less<>> bypass_tokens_;  // lookups per request
    std::set<std::string, std::less<>> block_tokens_;
    emergency_override override_;
    registration_control registration_;
    bool shadow_all_ = false;
    metering::price_table pricing_;
    std::uint64_t version_ = 0;
};

}  // namespace ratelimit_proxy::limit

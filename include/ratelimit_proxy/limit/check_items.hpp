#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/limit/decision.hpp"
#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"

namespace ratelimit_proxy::limit {

// Who and what one request's check is about: everything its bucket keys and numbers come from.
struct check_subject {
    std::string_view key_prefix;  // the store's, e.g. "rlp"
    std::string_view token_id;    // empty: no token (POST /register)
    std::string_view client_address;
    std::string_view method;
    std::string_view path;                       // without the query
    const token_overrides* overrides = nullptr;  // this token's numbers per policy; null: none
    // The emergency factor times the load factor: below 1 every limit is tightened.
    double scale = 1;
    bool shadow_all = false;  // the rules' shadow mode: every policy is decided, none enforced
    // Concurrency policies: the request's lease id and how long a lease lives unrenewed.
    std::string_view lease_id;
    double lease_seconds = 60;
    // Metered policies (policy::metered()): the reservation of each, in its meter's unit
    // (tokens, nano-USD), one entry per policy given to build_check_items, in the same order
    // (the entries of the other policies are not read; a missing entry reserves 0). And the
    // request's hold id and how long its holds live unsettled.
    std::span<const double> metered_costs;
    std::string_view hold_id;
    double hold_seconds = 0;
};

// One item per policy, in order, written over `items`: the items and their key strings are
// kept across requests, so once they have grown nothing is allocated. Each item's numbers are
// the policy's, then the token's override for it, if any, then the scale, which tightens,
// never loosens, and leaves at least one request per window possible. A concurrency item's
// window is the lease time (a window or burst override does not apply to it). A metered item
// costs its reservation (never the policy's cost) and carries the hold id and time.
void build_check_items(std::span<const policy* const> policies, const check_subject& s,
                       std::vector<check_item>& items);

}  // namespace ratelimit_proxy::limit

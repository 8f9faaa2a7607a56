#pragma once

#include <array>
#include <string>
#include <string_view>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

// Header values for one decision: the legacy X-RateLimit trio (Reset in delta-seconds) and
// the IETF httpapi draft fields. The trio and RateLimit describe the tightest enforced
// request policy; RateLimit-Policy lists every enforced request policy that applied. Shadow
// policies never show. Seconds are rounded up so a client that waits them is never early. On
// a denial Reset equals Retry-After. All empty when no enforced policy applied.
//
// Budgets (metered policies: tokens, money) are not in the draft's fields: its quota units
// ("qu") come from an IANA registry that knows requests, content-bytes and concurrency, not
// tokens or currency. So the tightest budget gets fields of its own: X-Budget-Limit,
// X-Budget-Remaining (tokens, or USD with up to 9 decimals), X-Budget-Reset (seconds to the
// window's reset; absent for a lifetime budget) and X-Budget-Unit ("tokens" or "usd"). An
// exhausted budget's 429 also says X-Should-Retry: false (the OpenAI and Anthropic SDKs then
// stop instead of retrying).
struct rate_limit_headers {
    std::string limit;        // X-RateLimit-Limit
    std::string remaining;    // X-RateLimit-Remaining
    std::string reset;        // X-RateLimit-Reset
    std::string policy;       // RateLimit-Policy
    std::string rate_limit;   // RateLimit
    std::string retry_after;  // Retry-After
    std::string budget_limit;
    std::string budget_remaining;
    std::string budget_reset;
    std::string budget_unit;
    std::string should_retry;  // X-Should-Retry: "false" when a budget is spent

    bool empty() const { return limit.empty() && budget_limit.empty(); }
    // "Name: value\r\n" for each non-empty field, ready to go into a serialized header.
    void append_lines(std::string& out) const;
    // Whether append_lines writes this field (one of rate_limit_field_names): a message
    // passed through drops its own field of that name first.
    bool sets(std::string_view field_name) const;

  private:
    // The values in the order of rate_limit_field_names.
    std::array<const std::string*, 11> values() const {
        return {&limit,        &remaining,   &reset,        &policy,
                &rate_limit,   &retry_after, &budget_limit, &budget_remaining,
                &budget_reset, &budget_unit, &should_retry};
    }
};

// The field names rate_limit_headers writes.
inline constexpr std::string_view rate_limit_field_names[] = {
    "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy",
    "RateLimit",         "Retry-After",           "X-Budget-Limit",    "X-Budget-Remaining",
    "X-Budget-Reset",    "X-Budget-Unit",         "X-Should-Retry",
};

// A budget amount as its unit shows it: whole tokens, or USD from nano-USD ("0.00015").
std::string budget_amount_text(const policy& p, double amount);

rate_limit_headers make_headers(const decision& d);

}  // namespace ratelimit_proxy::limit

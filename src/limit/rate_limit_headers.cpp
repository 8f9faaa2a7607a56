#include "ratelimit_proxy/limit/rate_limit_headers.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace ratelimit_proxy::limit {

namespace {
// Rounds up, tolerating float noise from the Lua string round trip (2.0000001 -> 2).
std::int64_t ceil_seconds(double s) {
    if (!(s > 0))
        return 0;
    return static_cast<std::int64_t>(std::ceil(s - 1e-6));
}

std::int64_t quota_of(const policy_result& r) {
    return static_cast<std::int64_t>(std::floor(r.quota + 1e-9));
}

void append_number(std::string& out, std::int64_t v) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, end);
}
}  // namespace

void rate_limit_headers::append_lines(std::string& out) const {
    const auto v = values();
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (!v[i]->empty())
            out.append(rate_limit_field_names[i]).append(": ").append(*v[i]).append("\r\n");
    }
}

bool rate_limit_headers::sets(std::string_view field_name) const {
    const auto v = values();
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (rate_limit_field_names[i] == field_name)
            return !v[i]->empty();
    }
    return false;
}

std::string budget_amount_text(const policy& p, double amount) {
    // Within what a double holds exactly (and an int64 holds at all).
    amount = std::clamp(amount, 0.0, 9e15);
    if (p.what != meter::usd)
        return std::to_string(static_cast<std::int64_t>(std::floor(amount + 1e-9)));
    const auto nano = static_cast<std::int64_t>(std::floor(amount + 1e-6));
    std::string text = std::to_string(nano / 1'000'000'000);
    if (const auto fraction = nano % 1'000'000'000; fraction != 0) {
        char digits[16];
        std::snprintf(digits, sizeof digits, ".%09lld", static_cast<long long>(fraction));
        std::string_view f(digits);
        while (f.back() == '0')
            f.remove_suffix(1);
        text.append(f);
    }
    return text;
}

namespace {

void set_budget_fields(const decision& d, rate_limit_headers& h) {
    if (d.tightest_budget < 0)
        return;
    const auto& b = d.results[static_cast<std::size_t>(d.tightest_budget)];
    const auto& p = *b.source;
    h.budget_limit = budget_amount_text(p, b.quota);
    h.budget_remaining = budget_amount_text(p, static_cast<double>(b.remaining));
    if (p.numbers.period != calendar::lifetime)
        h.budget_reset = std::to_string(ceil_seconds(b.reset_seconds));
    h.budget_unit = p.what == meter::usd ? "usd" : "tokens";
    // Spent, not merely held by requests in flight: retrying before the reset is pointless.
    if (!b.allowed && !b.held_out)
        h.should_retry = "false";
}

}  // namespace

rate_limit_headers make_headers(const decision& d) {
    rate_limit_headers h;
    if (d.tightest < 0)
        return h;
    set_budget_fields(d, h);
    // Retry-After: the denial the client must wait for, whichever kind of policy it is.
    const auto& denying = d.results[static_cast<std::size_t>(d.tightest)];
    const bool lifetime_spent = !d.allowed && denying.source->metered() && !denying.held_out &&
                                denying.source->numbers.period == calendar::lifetime;
    const auto retry_after = std::max<std::int64_t>(1, ceil_seconds(denying.retry_after_seconds));
    if (!d.allowed && !lifetime_spent)
        h.retry_after = std::to_string(retry_after);
    if (d.tightest_request < 0)
        return h;
    const auto& t = d.results[static_cast<std::size_t>(d.tightest_request)];
    const auto quota = quota_of(t);
    const auto remaining = std::clamp<std::int64_t>(t.remaining, 0, quota);
    // A denied client reads Reset and Retry-After together: both say when to come back, so
    // Retry-After is never earlier than the reset the client is shown.
    const auto reset = t.allowed ? ceil_seconds(t.reset_seconds) : retry_after;

    h.limit = std::to_string(quota);
    h.remaining = std::to_string(remaining);
    h.reset = std::to_string(reset);
    for (const auto& r : d.results) {
        if (r.shadow || r.source->metered())
            continue;
        if (!h.policy.empty())
            h.policy.append(", ");
        h.policy.append("\"").append(r.source->name).append("\";q=");
        append_number(h.policy, quota_of(r));
        // A concurrency quota is slots, not a count per time window: no w.
        if (r.source->algo != algorithm::concurrency) {
            h.policy.append(";w=");
            append_number(h.policy, std::max<std::int64_t>(1, ceil_seconds(r.window_seconds)));
        }
    }
    h.rate_limit = "\"" + t.source->name + "\";r=" + h.remaining + ";t=" + h.reset;
    return h;
}

}  // namespace ratelimit_proxy::limit

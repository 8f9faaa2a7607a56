#pragma once

// Helpers shared by the memory_store unit tests and the policies.lua integration tests: items
// built from a few numbers, the script's ARGV/reply, and the edge-case scenarios themselves,
// written once against a `checker` so the Lua script and its C++ twin face the same cases.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "ratelimit_proxy/limit/decision.hpp"
#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/limit/policy_script.hpp"

namespace rlp_test {

namespace limit = ratelimit_proxy::limit;

// Decides items at a time (Unix µs): memory_store::check, or one EVAL of the script.
using checker =
    std::function<limit::decision(std::span<const limit::check_item>, std::int64_t now_us)>;

constexpr std::int64_t sec = 1'000'000;

// Builds check items; owns the policies they point at.
class policy_items {
  public:
    limit::check_item make(limit::algorithm algo, std::string key, double limit_, double window,
                           double burst = 0, std::uint32_t cost = 1, bool shadow = false,
                           bool month = false) {
        auto& p = policies_.emplace_back();
        p.name = key;
        p.algo = algo;
        p.numbers = {limit_, window, burst, month ? limit::calendar::month : limit::calendar::none};
        p.cost = cost;
        p.shadow = shadow;
        limit::check_item it;
        it.source = &p;
        it.key = std::move(key);
        it.numbers = p.numbers;
        it.cost = cost;
        it.shadow = shadow;
        return it;
    }

  private:
    std::deque<limit::policy> policies_;  // stable addresses
};

// A number as the script reads it back exactly (tonumber of %.17g is the same double).
inline std::string exact(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return buf;
}

// EVAL's arguments after the script: numkeys, KEYS, ARGV (policy_script.hpp).
inline std::vector<std::string> script_args(std::span<const limit::check_item> items,
                                            std::optional<std::int64_t> now_us) {
    std::vector<std::string> out{std::to_string(items.size())};
    for (const auto& it : items)
        out.push_back(it.key);
    out.push_back(now_us ? std::to_string(*now_us) : "");
    out.push_back(std::to_string(items.size()));
    for (const auto& it : items) {
        out.push_back(std::string(limit::policy_script::algorithm_code(it.source->algo)));
        out.push_back(exact(it.numbers.limit));
        out.push_back(exact(it.numbers.window_seconds));
        // Concurrency: the burst field carries the lease id.
        out.push_back(it.source->algo == limit::algorithm::concurrency ? std::string(it.lease_id)
                                                                       : exact(it.numbers.burst));
        out.push_back(std::to_string(it.cost));
        std::string flags;
        if (it.shadow)
            flags += 's';
        if (it.numbers.period == ratelimit_proxy::limit::calendar::month)
            flags += 'm';
        if (it.numbers.period == ratelimit_proxy::limit::calendar::week)
            flags += 'w';
        if (it.numbers.period == ratelimit_proxy::limit::calendar::lifetime)
            flags += 'l';
        if (it.metered && it.source->algo != limit::algorithm::concurrency)
            flags += 'h';
        out.push_back(flags);
    }
    // The hold id and time of the first metered item (they are the request's).
    for (const auto& it : items) {
        if (it.metered && it.source->algo != limit::algorithm::concurrency) {
            out.push_back(std::string(it.hold_id));
            out.push_back(exact(it.hold_seconds));
            break;
        }
    }
    return out;
}

// The script's reply, flattened by redis_server::command (one element per line), as a
// decision. quota and window_seconds are not in the reply: left 0.
inline limit::decision parse_script_reply(const std::string& flat,
                                          std::span<const limit::check_item> items) {
    std::vector<std::string> lines;
    std::istringstream in(flat);
    for (std::string l; std::getline(in, l);)
        lines.push_back(l);
    limit::decision d;
    EXPECT_EQ(lines.size(), 1 + 4 * items.size()) << flat;
    if (lines.size() != 1 + 4 * items.size())
        return d;
    d.allowed = lines[0] == "1";
    for (std::size_t i = 0; i < items.size(); ++i) {
        limit::policy_result r;
        r.source = items[i].source;
        r.shadow = items[i].shadow;
        r.allowed = lines[1 + 4 * i] == "1";
        r.held_out = lines[1 + 4 * i] == "2";
        r.remaining = std::stoll(lines[2 + 4 * i]);
        r.reset_seconds = std::stod(lines[3 + 4 * i]);
        r.retry_after_seconds = std::stod(lines[4 + 4 * i]);
        d.results.push_back(r);
    }
    d.choose_tightest();
    return d;
}

// ---- Edge cases, run against both implementations. `p` makes the keys unique per test.

// 60 per 60 s with a burst of 5: 1 token per second.
inline void token_bucket_spends_burst_then_refills_after_one_over_rate(const checker& check,
                                                                       const std::string& p,
                                                                       limit::algorithm algo) {
    policy_items b;
    const auto it = b.make(algo, p + "tb", 60, 60, 5);
    const std::int64_t t0 = 1'706'745'600 * sec;
    for (int i = 0; i < 5; ++i) {
        auto d = check({&it, 1}, t0);
        ASSERT_TRUE(d.allowed) << i;
        EXPECT_EQ(d.results[0].remaining, 4 - i);
        EXPECT_DOUBLE_EQ(d.results[0].reset_seconds, i + 1.0);
    }
    auto denied = check({&it, 1}, t0);
    EXPECT_FALSE(denied.allowed);
    EXPECT_EQ(denied.results[0].remaining, 0);
    EXPECT_DOUBLE_EQ(denied.results[0].retry_after_seconds, 1.0);
    EXPECT_DOUBLE_EQ(denied.results[0].reset_seconds, 5.0);
    EXPECT_FALSE(check({&it, 1}, t0 + sec - 1).allowed);
    auto refilled = check({&it, 1}, t0 + sec);
    EXPECT_TRUE(refilled.allowed);
    EXPECT_EQ(refilled.results[0].remaining, 0);
    // A long pause fills the bucket to its capacity, not beyond.
    auto full = check({&it, 1}, t0 + 100 * sec);
    EXPECT_TRUE(full.allowed);
    EXPECT_EQ(full.results[0].remaining, 4);
}

inline void token_bucket_cost_above_one(const checker& check, const std::string& p,
                                        limit::algorithm algo) {
    policy_items b;
    const auto three = b.make(algo, p + "cost", 10, 10, 5, 3);  // 1/s, capacity 5
    auto first = check({&three, 1}, 100 * sec);
    EXPECT_TRUE(first.allowed);
    EXPECT_EQ(first.results[0].remaining, 2);
    auto second = check({&three, 1}, 100 * sec);
    EXPECT_FALSE(second.allowed);
    EXPECT_EQ(second.results[0].remaining, 2);  // nothing consumed
    EXPECT_DOUBLE_EQ(second.results[0].retry_after_seconds, 1.0);
    EXPECT_TRUE(check({&three, 1}, 101 * sec).allowed);
    // More than the capacity can never pass: denied, told to come back after a window.
    const auto huge = b.make(algo, p + "huge", 10, 10, 5, 6);
    auto never = check({&huge, 1}, 100 * sec);
    EXPECT_FALSE(never.allowed);
    EXPECT_EQ(never.results[0].remaining, 5);
    EXPECT_DOUBLE_EQ(never.results[0].retry_after_seconds, 10.0);
}

// limit 10 per 60 s. Window [0, 60) full; 15 s into the next one the previous count weighs
// 0.75: est 7.5, so two more fit (8.5, 9.5) and the third waits until est <= 9.
inline void sliding_window_weighs_previous_window_across_boundary(const checker& check,
                                                                  const std::string& p) {
    policy_items b;
    const auto it = b.make(limit::algorithm::sliding_window, p + "sw", 10, 60);
    const std::int64_t w0 = 28'333'333LL * 60 * sec;  // a window start (aligned to the epoch)
    for (int i = 0; i < 10; ++i)
        ASSERT_TRUE(check({&it, 1}, w0 + i * sec).allowed) << i;
    auto full = check({&it, 1}, w0 + 30 * sec);
    EXPECT_FALSE(full.allowed);
    // Next window: c=10 becomes the previous count; est + 1 <= 10 once 10 * w <= 9: w = 0.9.
    EXPECT_NEAR(full.results[0].retry_after_seconds, 30 + 6, 1e-6);
    EXPECT_DOUBLE_EQ(full.results[0].reset_seconds, 90.0);

    const std::int64_t t = w0 + 75 * sec;  // 15 s into the next window
    auto a = check({&it, 1}, t);
    EXPECT_TRUE(a.allowed);
    EXPECT_EQ(a.results[0].remaining, 1);                 // floor(10 - 8.5)
    EXPECT_DOUBLE_EQ(a.results[0].reset_seconds, 105.0);  // until the current count ages out
    auto c = check({&it, 1}, t);
    EXPECT_TRUE(c.allowed);
    EXPECT_EQ(c.results[0].remaining, 0);  // floor(10 - 9.5)
    auto d = check({&it, 1}, t);
    EXPECT_FALSE(d.allowed);
    // Within this window: 10 * w <= 10 - 2 - 1 at w = 0.7, i.e. 18 s in: 3 s from now.
    EXPECT_NEAR(d.results[0].retry_after_seconds, 3.0, 1e-6);
    // (Within the 6-decimal grid: est is rounded to 1e-6 requests, i.e. ~6 µs here.)
    EXPECT_FALSE(check({&it, 1}, t + 3 * sec - 100).allowed);
    EXPECT_TRUE(check({&it, 1}, t + 3 * sec).allowed);

    // Two windows later nothing is left.
    auto fresh = check({&it, 1}, w0 + 180 * sec);
    EXPECT_TRUE(fresh.allowed);
    EXPECT_EQ(fresh.results[0].remaining, 9);
    EXPECT_DOUBLE_EQ(fresh.results[0].reset_seconds, 120.0);
}

inline void fixed_window_resets_exactly_at_boundary(const checker& check, const std::string& p) {
    policy_items b;
    const auto it = b.make(limit::algorithm::fixed_window, p + "fw", 3, 60);
    const std::int64_t boundary = 28'333'334LL * 60 * sec;
    for (int i = 0; i < 3; ++i) {
        auto d = check({&it, 1}, boundary - 10 * sec);
        ASSERT_TRUE(d.allowed);
        EXPECT_EQ(d.results[0].remaining, 2 - i);
        EXPECT_DOUBLE_EQ(d.results[0].reset_seconds, 10.0);
    }
    auto denied = check({&it, 1}, boundary - 1);
    EXPECT_FALSE(denied.allowed);
    EXPECT_NEAR(denied.results[0].retry_after_seconds, 1e-6, 1e-9);
    auto next = check({&it, 1}, boundary);
    EXPECT_TRUE(next.allowed);
    EXPECT_EQ(next.results[0].remaining, 2);
    EXPECT_DOUBLE_EQ(next.results[0].reset_seconds, 60.0);
    // cost > limit: denied until the window's end (it will not fit then either).
    const auto big = b.make(limit::algorithm::fixed_window, p + "fwbig", 3, 60, 0, 4);
    auto never = check({&big, 1}, boundary);
    EXPECT_FALSE(never.allowed);
    EXPECT_DOUBLE_EQ(never.results[0].retry_after_seconds, 60.0);
}

inline void day_window_resets_at_midnight_utc(const checker& check, const std::string& p) {
    policy_items b;
    const auto it = b.make(limit::algorithm::fixed_window, p + "day", 2, 86400);
    const std::int64_t last_second = 1'710'115'199LL * sec;  // 2024-03-10 23:59:59 UTC
    EXPECT_TRUE(check({&it, 1}, last_second - 3600 * sec).allowed);
    EXPECT_TRUE(check({&it, 1}, last_second).allowed);
    auto denied = check({&it, 1}, last_second);
    EXPECT_FALSE(denied.allowed);
    EXPECT_DOUBLE_EQ(denied.results[0].retry_after_seconds, 1.0);
    auto midnight = check({&it, 1}, last_second + sec);
    EXPECT_TRUE(midnight.allowed);
    EXPECT_EQ(midnight.results[0].remaining, 1);
    EXPECT_DOUBLE_EQ(midnight.results[0].reset_seconds, 86400.0);
}

inline void calendar_month_rolls_over_and_knows_leap_years(const checker& check,
                                                           const std::string& p) {
    policy_items b;
    const auto it = b.make(limit::algorithm::fixed_window, p + "month", 2, 0, 0, 1, false, true);
    const std::int64_t jan31 = 1'706'745'599LL * sec;  // 2024-01-31 23:59:59 UTC
    EXPECT_TRUE(check({&it, 1}, jan31 - 20 * 86400 * sec).allowed);
    EXPECT_TRUE(check({&it, 1}, jan31).allowed);
    auto denied = check({&it, 1}, jan31);
    EXPECT_FALSE(denied.allowed);
    EXPECT_DOUBLE_EQ(denied.results[0].retry_after_seconds, 1.0);
    EXPECT_DOUBLE_EQ(denied.results[0].reset_seconds, 1.0);
    auto feb1 = check({&it, 1}, jan31 + sec);
    EXPECT_TRUE(feb1.allowed);
    EXPECT_EQ(feb1.results[0].remaining, 1);
    EXPECT_DOUBLE_EQ(feb1.results[0].reset_seconds, 29 * 86400.0);  // 2024 is a leap year
    // February 2023 has 28 days.
    const auto y23 = b.make(limit::algorithm::fixed_window, p + "m23", 2, 0, 0, 1, false, true);
    auto feb23 = check({&y23, 1}, 1'676'419'200LL * sec);  // 2023-02-15 00:00:00
    EXPECT_DOUBLE_EQ(feb23.results[0].reset_seconds, 14 * 86400.0);
    // December rolls into January of the next year.
    auto dec = check({&y23, 1}, 1'704'067'199LL * sec);  // 2023-12-31 23:59:59
    EXPECT_TRUE(dec.allowed);
    EXPECT_DOUBLE_EQ(dec.results[0].reset_seconds, 1.0);
}

// tb (10 per 10 s, burst 10) and fw (1 per 60 s): once fw is spent, a request is denied and
// takes nothing from tb either.
inline void denied_multi_item_request_consumes_nothing(const checker& check, const std::string& p) {
    policy_items b;
    const std::vector<limit::check_item> items{
        b.make(limit::algorithm::token_bucket, p + "a", 10, 10),
        b.make(limit::algorithm::fixed_window, p + "b", 1, 60),
        b.make(limit::algorithm::sliding_window, p + "c", 5, 60),
    };
    const std::int64_t t = 1'800'000'000LL * sec;
    auto first = check(items, t);
    ASSERT_TRUE(first.allowed);
    EXPECT_EQ(first.results[0].remaining, 9);
    EXPECT_EQ(first.results[1].remaining, 0);
    EXPECT_EQ(first.results[2].remaining, 4);
    for (int i = 0; i < 3; ++i) {
        auto denied = check(items, t);
        EXPECT_FALSE(denied.allowed);
        EXPECT_TRUE(denied.results[0].allowed);
        EXPECT_FALSE(denied.results[1].allowed);
        EXPECT_TRUE(denied.results[2].allowed);
        // Not consumed: remaining describes the state without this request.
        EXPECT_EQ(denied.results[0].remaining, 9);
        EXPECT_EQ(denied.results[2].remaining, 4);
        EXPECT_EQ(denied.tightest, 1);
    }
    // Each alone still has what the first request left.
    auto tb = check({&items[0], 1}, t);
    EXPECT_EQ(tb.results[0].remaining, 8);
    auto sw = check({&items[2], 1}, t);
    EXPECT_EQ(sw.results[0].remaining, 3);
}

inline void shadow_item_that_denies_does_not_block(const checker& check, const std::string& p) {
    policy_items b;
    const std::vector<limit::check_item> items{
        b.make(limit::algorithm::gcra, p + "enforced", 10, 10),
        b.make(limit::algorithm::fixed_window, p + "shadow", 1, 60, 0, 1, true),
    };
    const std::int64_t t = 1'800'000'000LL * sec;
    ASSERT_TRUE(check(items, t).allowed);
    auto d = check(items, t);
    EXPECT_TRUE(d.allowed);
    EXPECT_TRUE(d.results[0].allowed);
    EXPECT_EQ(d.results[0].remaining, 8);  // consumed
    EXPECT_FALSE(d.results[1].allowed);
    EXPECT_TRUE(d.results[1].shadow);
    EXPECT_EQ(d.results[1].remaining, 0);
    EXPECT_EQ(d.tightest, 0);  // shadow policies are never reported
}

// 2 slots, a 10 s lease (the window field): two requests hold them, a third is refused with
// retry 1 and no slot counted; the leases count up to their expiry, inclusive, then not.
inline void concurrency_counts_live_leases_until_they_expire(const checker& check,
                                                             const std::string& p) {
    policy_items b;
    auto it = b.make(limit::algorithm::concurrency, p + "cc", 2, 10);
    const std::int64_t t = 1'800'000'000LL * sec;
    auto with_id = [&](std::string_view id) {
        auto copy = it;
        copy.lease_id = id;
        return copy;
    };
    const auto a = with_id("a"), bb = with_id("b"), c = with_id("c"), d = with_id("d");
    auto first = check({&a, 1}, t);
    ASSERT_TRUE(first.allowed);
    EXPECT_EQ(first.results[0].remaining, 1);
    EXPECT_DOUBLE_EQ(first.results[0].reset_seconds, 0);
    auto second = check({&bb, 1}, t + 1);
    ASSERT_TRUE(second.allowed);
    EXPECT_EQ(second.results[0].remaining, 0);
    EXPECT_DOUBLE_EQ(second.results[0].reset_seconds, 1);
    for (int i = 0; i < 2; ++i) {
        auto refused = check({&c, 1}, t + 2);
        EXPECT_FALSE(refused.allowed);
        EXPECT_EQ(refused.results[0].remaining, 0);
        EXPECT_DOUBLE_EQ(refused.results[0].retry_after_seconds, 1);
        EXPECT_DOUBLE_EQ(refused.results[0].reset_seconds, 1);
    }
    // a's lease ends at t + 10 s: still held then, gone a microsecond later.
    EXPECT_FALSE(check({&c, 1}, t + 10 * sec).allowed);
    auto after = check({&c, 1}, t + 10 * sec + 1);
    ASSERT_TRUE(after.allowed);
    EXPECT_EQ(after.results[0].remaining, 0);                // b and c
    EXPECT_FALSE(check({&d, 1}, t + 10 * sec + 1).allowed);  // b lives until then, inclusive
}

// A concurrency slot is only taken when the whole request is allowed.
inline void concurrency_slot_not_taken_when_another_policy_denies(const checker& check,
                                                                  const std::string& p) {
    policy_items b;
    auto cc = b.make(limit::algorithm::concurrency, p + "cc", 1, 10);
    cc.lease_id = "x";
    const std::vector<limit::check_item> items{
        cc, b.make(limit::algorithm::fixed_window, p + "fw", 1, 60)};
    const std::int64_t t = 1'800'000'000LL * sec;
    auto spend = check({&items[1], 1}, t);  // the window's one request
    ASSERT_TRUE(spend.allowed);
    for (int i = 0; i < 3; ++i) {
        auto denied = check(items, t);
        EXPECT_FALSE(denied.allowed);
        EXPECT_TRUE(denied.results[0].allowed);
        EXPECT_EQ(denied.results[0].remaining, 1);  // the slot is still free
    }
    auto alone = check({&items[0], 1}, t);
    EXPECT_TRUE(alone.allowed);
    EXPECT_EQ(alone.results[0].remaining, 0);
}

}  // namespace rlp_test

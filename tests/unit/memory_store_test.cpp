#include "ratelimit_proxy/limit/memory_store.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "policy_checks.hpp"
#include "ratelimit_proxy/limit/memory_limiter.hpp"

namespace {

namespace limit = ratelimit_proxy::limit;
using limit::algorithm;
using rlp_test::sec;

class MemoryStoreTest : public ::testing::Test {
  protected:
    limit::memory_store store_;
    rlp_test::checker check_ = [this](std::span<const limit::check_item> items, std::int64_t now) {
        return store_.check(items, now);
    };
    rlp_test::policy_items items_;
};

TEST_F(MemoryStoreTest, TokenBucketSpendsBurstThenRefillsAfterExactlyOneOverRate) {
    rlp_test::token_bucket_spends_burst_then_refills_after_one_over_rate(
        check_, "k:", algorithm::token_bucket);
}

TEST_F(MemoryStoreTest, GcraSpendsBurstThenRefillsAfterExactlyOneOverRate) {
    rlp_test::token_bucket_spends_burst_then_refills_after_one_over_rate(check_,
                                                                         "k:", algorithm::gcra);
}

TEST_F(MemoryStoreTest, TokenBucketChargesCostAboveOne) {
    rlp_test::token_bucket_cost_above_one(check_, "k:", algorithm::token_bucket);
}

TEST_F(MemoryStoreTest, GcraChargesCostAboveOne) {
    rlp_test::token_bucket_cost_above_one(check_, "k:", algorithm::gcra);
}

// GCRA is the token bucket stored as one number: same decisions for the same sequence.
TEST_F(MemoryStoreTest, GcraDecidesLikeTokenBucketOnARandomSequence) {
    struct numbers {
        double limit, window, burst;
    };
    for (const auto n : {numbers{25, 10, 7}, numbers{3, 1, 5}, numbers{100, 60, 0}}) {
        const auto tb = items_.make(algorithm::token_bucket, "tb", n.limit, n.window, n.burst);
        const auto gc = items_.make(algorithm::gcra, "gcra", n.limit, n.window, n.burst);
        limit::memory_store a, b;
        std::mt19937 rng(7);
        std::uniform_int_distribution<int> gap_ms(0, 900);
        std::uniform_int_distribution<std::uint32_t> cost(1, 3);
        std::int64_t now = 1'700'000'000LL * sec;
        int allowed = 0, denied = 0;
        for (int i = 0; i < 500; ++i) {
            now += gap_ms(rng) * 1000LL;
            auto t = tb;
            auto g = gc;
            t.cost = g.cost = cost(rng);
            const auto x = a.check({&t, 1}, now).results[0];
            const auto y = b.check({&g, 1}, now).results[0];
            ASSERT_EQ(x.allowed, y.allowed) << "limit " << n.limit << " step " << i;
            ASSERT_EQ(x.remaining, y.remaining) << "limit " << n.limit << " step " << i;
            // tb keeps tokens on a 1e-6 grid, gcra a time: the two roundings may differ by
            // a grid step in the seconds they report.
            ASSERT_NEAR(x.reset_seconds, y.reset_seconds, 1e-5) << "step " << i;
            ASSERT_NEAR(x.retry_after_seconds, y.retry_after_seconds, 1e-5) << "step " << i;
            EXPECT_EQ(x.quota, y.quota);
            EXPECT_EQ(x.window_seconds, y.window_seconds);
            (x.allowed ? allowed : denied)++;
        }
        // A sequence that never denies (or never allows) proves nothing.
        EXPECT_GT(allowed, 50) << n.limit;
        EXPECT_GT(denied, 50) << n.limit;
    }
}

// Whenever a request is denied, waiting exactly retry_after (give or take the 6-decimal
// grid) is enough, and waiting noticeably less is not.
TEST_F(MemoryStoreTest, RetryAfterIsTheEarliestMomentTheRequestFits) {
    const std::vector<limit::check_item> cases{
        items_.make(algorithm::token_bucket, "tb", 10, 10, 3),
        items_.make(algorithm::gcra, "gcra", 10, 7, 3),
        items_.make(algorithm::sliding_window, "sw", 12, 10),
        items_.make(algorithm::fixed_window, "fw", 8, 7),
    };
    for (const auto& base : cases) {
        limit::memory_store store;
        std::mt19937_64 rng(11);
        std::uniform_int_distribution<std::int64_t> gap(0, 2 * sec);
        std::uniform_int_distribution<std::uint32_t> cost(1, 3);
        std::int64_t now = 1'700'000'000LL * sec;
        int probed = 0;
        for (int i = 0; i < 400; ++i) {
            now += gap(rng);
            auto it = base;
            it.cost = cost(rng);
            const auto r = store.check({&it, 1}, now).results[0];
            if (r.allowed)
                continue;
            const auto wait = static_cast<std::int64_t>(std::llround(r.retry_after_seconds * sec));
            auto later = store;  // probe copies: the sequence goes on undisturbed
            EXPECT_TRUE(later.check({&it, 1}, now + wait + 2).allowed)
                << limit::policy_script::algorithm_code(it.source->algo) << " step " << i;
            if (wait > 20) {
                auto sooner = store;
                EXPECT_FALSE(sooner.check({&it, 1}, now + wait - 20).allowed)
                    << limit::policy_script::algorithm_code(it.source->algo) << " step " << i;
            }
            ++probed;
        }
        EXPECT_GT(probed, 30) << limit::policy_script::algorithm_code(base.source->algo);
    }
}

TEST_F(MemoryStoreTest, SlidingWindowWeighsThePreviousWindowAcrossABoundary) {
    rlp_test::sliding_window_weighs_previous_window_across_boundary(check_, "k:");
}

TEST_F(MemoryStoreTest, FixedWindowResetsExactlyAtTheBoundary) {
    rlp_test::fixed_window_resets_exactly_at_boundary(check_, "k:");
}

TEST_F(MemoryStoreTest, DayWindowResetsAtMidnightUtc) {
    rlp_test::day_window_resets_at_midnight_utc(check_, "k:");
}

TEST_F(MemoryStoreTest, CalendarMonthRollsFromJan31ToFeb1AndKnowsLeapYears) {
    rlp_test::calendar_month_rolls_over_and_knows_leap_years(check_, "k:");
}

TEST_F(MemoryStoreTest, CalendarMonthReportsTheMonthsLengthAsItsWindow) {
    const auto it = items_.make(algorithm::fixed_window, "m", 5, 0, 0, 1, false, true);
    auto feb = check_({&it, 1}, 1'707'955'200LL * sec);  // 2024-02-15
    EXPECT_DOUBLE_EQ(feb.results[0].window_seconds, 29 * 86400.0);
    EXPECT_DOUBLE_EQ(feb.results[0].quota, 5);
}

TEST(UtcMonthBounds, HandlesLeapCenturiesAndDatesBefore1970) {
    std::int64_t start = 0, end = 0;
    limit::utc_month_bounds(950'140'800, start, end);  // 2000-02-10: leap (divisible by 400)
    EXPECT_EQ(start, 949'363'200);                     // 2000-02-01
    EXPECT_EQ(end - start, 29 * 86400);
    limit::utc_month_bounds(4'105'900'800, start, end);  // 2100-02-10: not leap
    EXPECT_EQ(end - start, 28 * 86400);
    limit::utc_month_bounds(-1'468'800, start, end);  // 1969-12-15
    EXPECT_EQ(start, -2'678'400);                     // 1969-12-01
    EXPECT_EQ(end, 0);                                // 1970-01-01
    limit::utc_month_bounds(0, start, end);
    EXPECT_EQ(start, 0);
    EXPECT_EQ(end, 31 * 86400);
}

TEST_F(MemoryStoreTest, DeniedMultiItemRequestConsumesNothingFromAnyItem) {
    rlp_test::denied_multi_item_request_consumes_nothing(check_, "k:");
}

TEST_F(MemoryStoreTest, ConcurrencyCountsLiveLeasesUntilTheyExpire) {
    rlp_test::concurrency_counts_live_leases_until_they_expire(check_, "k:");
}

TEST_F(MemoryStoreTest, ConcurrencySlotNotTakenWhenAnotherPolicyDenies) {
    rlp_test::concurrency_slot_not_taken_when_another_policy_denies(check_, "k:");
}

TEST_F(MemoryStoreTest, ConcurrencyLeaseReleasedOrRenewedByItsId) {
    rlp_test::policy_items b;
    auto it = b.make(algorithm::concurrency, "k:cc", 1, 10);
    const std::int64_t t = 1'800'000'000LL * rlp_test::sec;
    it.lease_id = "one";
    ASSERT_TRUE(store_.check({&it, 1}, t).allowed);
    store_.release("k:cc", "other");  // not its lease: nothing changes
    EXPECT_EQ(store_.live_leases("k:cc", t), 1u);
    store_.renew("k:cc", "one", 5 * rlp_test::sec);
    EXPECT_EQ(store_.live_leases("k:cc", t + 15 * rlp_test::sec), 1u);
    EXPECT_EQ(store_.live_leases("k:cc", t + 15 * rlp_test::sec + 1), 0u);
    store_.release("k:cc", "one");
    EXPECT_EQ(store_.live_leases("k:cc", t), 0u);
    it.lease_id = "two";
    EXPECT_TRUE(store_.check({&it, 1}, t).allowed);
}

TEST_F(MemoryStoreTest, ShadowItemThatDeniesDoesNotBlock) {
    rlp_test::shadow_item_that_denies_does_not_block(check_, "k:");
}

TEST_F(MemoryStoreTest, ResultsCarryQuotaWindowAndSource) {
    const std::vector<limit::check_item> items{
        items_.make(algorithm::token_bucket, "tb", 10, 60, 20),  // capacity 20 at 1/6 per s
        items_.make(algorithm::gcra, "gcra", 10, 60),
        items_.make(algorithm::sliding_window, "sw", 10, 60),
        items_.make(algorithm::fixed_window, "fw", 10, 3600, 0, 1, true),
    };
    auto d = check_(items, 1'800'000'000LL * sec);
    ASSERT_EQ(d.results.size(), 4u);
    EXPECT_DOUBLE_EQ(d.results[0].quota, 20);
    EXPECT_DOUBLE_EQ(d.results[0].window_seconds, 120);
    EXPECT_DOUBLE_EQ(d.results[1].quota, 10);
    EXPECT_DOUBLE_EQ(d.results[1].window_seconds, 60);
    EXPECT_DOUBLE_EQ(d.results[2].quota, 10);
    EXPECT_DOUBLE_EQ(d.results[2].window_seconds, 60);
    EXPECT_DOUBLE_EQ(d.results[3].window_seconds, 3600);
    EXPECT_TRUE(d.results[3].shadow);
    for (std::size_t i = 0; i < items.size(); ++i)
        EXPECT_EQ(d.results[i].source, items[i].source);
    EXPECT_TRUE(d.allowed);
    // choose_tightest() ran: one of the enforced policies, never the shadow one.
    EXPECT_GE(d.tightest, 0);
    EXPECT_LT(d.tightest, 3);
}

TEST_F(MemoryStoreTest, IdleBucketsExpireAndAreSweptAway) {
    const auto tb = items_.make(algorithm::token_bucket, "tb", 10, 10);  // full again in 1 s
    const auto fw = items_.make(algorithm::fixed_window, "fw", 10, 60);
    const std::int64_t t = 1'800'000'000LL * sec;
    check_({&tb, 1}, t);
    check_({&fw, 1}, t);
    EXPECT_EQ(store_.size(), 2u);
    // tb: full after 1 s, + 1 s slack; fw: window end + 1 s. Sweeps run at most every 10 s.
    check_({}, t + 5 * sec);
    EXPECT_EQ(store_.size(), 2u);
    check_({}, t + 11 * sec);
    EXPECT_EQ(store_.size(), 1u);
    check_({}, t + 62 * sec);
    EXPECT_EQ(store_.size(), 0u);
    // An expired bucket decides like a fresh one.
    auto again = check_({&tb, 1}, t + 70 * sec);
    EXPECT_EQ(again.results[0].remaining, 9);
}

TEST_F(MemoryStoreTest, EraseDropsABucket) {
    const auto fw = items_.make(algorithm::fixed_window, "fw", 1, 60);
    const std::int64_t t = 1'800'000'000LL * sec;
    EXPECT_TRUE(check_({&fw, 1}, t).allowed);
    EXPECT_FALSE(check_({&fw, 1}, t).allowed);
    store_.erase("fw");
    EXPECT_TRUE(check_({&fw, 1}, t).allowed);
}

TEST(UnixMicros, IsTheSystemClockInMicroseconds) {
    const auto now = limit::unix_micros();
    EXPECT_GT(now, 1'700'000'000LL * sec);
    EXPECT_LT(now, 4'000'000'000LL * sec);
}

// ---- Metered budgets (the twin of settle.lua; policy_script_test compares the two).

TEST_F(MemoryStoreTest, MeteredWindowHoldsTheReservationUntilSettled) {
    auto fw = items_.make(algorithm::fixed_window, "fw", 100, 3600);
    fw.metered = true;
    fw.hold_seconds = 60;
    const std::int64_t t = 1'800'000'000LL * sec;
    fw.hold_id = "a";
    fw.cost = 70;
    ASSERT_TRUE(store_.check({&fw, 1}, t).allowed);
    fw.hold_id = "b";
    fw.cost = 40;
    const auto held = store_.check({&fw, 1}, t);
    EXPECT_TRUE(held.results[0].held_out);
    EXPECT_DOUBLE_EQ(held.results[0].retry_after_seconds, 1);
    fw.cost = 70;
    const std::vector<double> used{20};
    const auto s = store_.settle({&fw, 1}, used, "a", t);
    EXPECT_EQ(s[0].used, 20);
    EXPECT_EQ(s[0].held, 0);
    fw.cost = 40;
    EXPECT_TRUE(store_.check({&fw, 1}, t).allowed);
    EXPECT_EQ(store_.peek({&fw, 1}, t)[0].held, 40);
    // The hold lives its hold_seconds, then counts for nothing.
    EXPECT_EQ(store_.peek({&fw, 1}, t + 61 * sec)[0].held, 0);
}

TEST_F(MemoryStoreTest, CreditRefusesAnythingButFixedWindows) {
    const auto fw = items_.make(algorithm::fixed_window, "fw", 10, 60);
    const auto tb = items_.make(algorithm::token_bucket, "tb", 10, 60);
    const std::int64_t t = 1'800'000'000LL * sec;
    const std::vector<limit::check_item> mixed{fw, tb};
    const std::vector<double> amounts{3, 3};
    EXPECT_FALSE(store_.credit(mixed, amounts, t));
    EXPECT_EQ(store_.peek({&fw, 1}, t)[0].used, 0);
    const auto credited = store_.credit({&fw, 1}, amounts, t);
    ASSERT_TRUE(credited);
    EXPECT_EQ((*credited)[0].used, -3);
}

TEST(MemoryLimiter, SettlesOnlyMeteredItemsAndKeepsUsageInMemory) {
    rlp_test::policy_items items;
    std::int64_t now = 1'800'000'000LL * sec;
    limit::shared_memory_store shared([&] { return now; });
    limit::memory_limiter limiter(shared);
    auto budget = items.make(algorithm::fixed_window, "budget", 1000, 86400);
    budget.metered = true;
    budget.hold_id = "r1";
    budget.hold_seconds = 900;
    budget.cost = 500;
    const auto requests = items.make(algorithm::fixed_window, "requests", 10, 60);
    const std::vector<limit::check_item> check{budget, requests};
    bool allowed = false;
    limiter.check(check, [&](limit::decision&& d) { allowed = d.allowed; });
    ASSERT_TRUE(allowed);
    limit::usage_record record;
    record.key = "{rlp}:usage:0123456789abcdef:2027-01-15";
    record.days_key = "{rlp}:usage-days:2027-01-15";
    record.token_id = "0123456789abcdef";
    record.model = "gpt-4o";
    record.output = 12;
    record.nano_usd = 345;
    const std::vector<double> actual{345, 1};
    limiter.settle(check, actual, "r1", &record);
    std::vector<limit::budget_state> states;
    limiter.inspect(check, [&](bool ok, std::vector<limit::budget_state>&& s) {
        EXPECT_TRUE(ok);
        states = std::move(s);
    });
    ASSERT_EQ(states.size(), 2u);
    EXPECT_EQ(states[0].used, 345);
    EXPECT_EQ(states[0].held, 0);
    EXPECT_EQ(states[1].used, 1);  // the request policy's count, untouched by settle
    const auto usage = shared.usage(record.key);
    EXPECT_EQ(usage.at("gpt-4o|requests"), 1);
    EXPECT_EQ(usage.at("gpt-4o|output"), 12);
    EXPECT_EQ(usage.at("gpt-4o|nano_usd"), 345);
    EXPECT_EQ(shared.usage_tokens(record.days_key).count("0123456789abcdef"), 1u);
    now += (limit::default_usage_retention.count() + 1) * sec;
    EXPECT_TRUE(shared.usage(record.key).empty());
}

}  // namespace

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "policy_checks.hpp"
#include "process.hpp"
#include "ratelimit_proxy/limit/lua_scripts.hpp"
#include "ratelimit_proxy/limit/memory_store.hpp"
#include "redis_server.hpp"

namespace {

namespace limit = ratelimit_proxy::limit;
using limit::algorithm;
using rlp_test::sec;

// lua/policies.lua against a real redis-server, with the time injected through ARGV[1]; and
// the same sequences fed to memory_store, which must decide identically.
class PolicyScriptTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { server_ = std::make_unique<rlp_test::redis_server>(); }
    static void TearDownTestSuite() { server_.reset(); }

    // One EVAL: the flattened reply.
    static std::string eval_raw(std::span<const limit::check_item> items,
                                std::optional<std::int64_t> now_us) {
        std::vector<std::string> cmd{"EVAL", std::string(ratelimit_proxy::lua::policies)};
        for (auto& a : rlp_test::script_args(items, now_us))
            cmd.push_back(std::move(a));
        return server_->command(cmd);
    }
    static limit::decision eval(std::span<const limit::check_item> items,
                                std::optional<std::int64_t> now_us) {
        return rlp_test::parse_script_reply(eval_raw(items, now_us), items);
    }
    std::string redis(const std::vector<std::string>& args) { return server_->command(args); }

    // Feeds the same random (time advance, cost per item) sequence to the script and to
    // memory_store and demands the same decisions. Returns {allowed, denied} counts.
    std::pair<int, int> expect_equivalent(std::vector<limit::check_item> items,
                                          std::int64_t start_us, std::int64_t max_gap_us, int steps,
                                          std::uint32_t seed) {
        limit::memory_store twin;
        std::mt19937_64 rng(seed);
        std::uniform_int_distribution<std::int64_t> gap(0, max_gap_us);
        std::uniform_int_distribution<std::uint32_t> cost(1, 3);
        std::int64_t now = start_us;
        int allowed = 0, denied = 0;
        for (int i = 0; i < steps; ++i) {
            now += gap(rng);
            for (auto& it : items)
                it.cost = cost(rng);
            const auto lua = eval(items, now);
            const auto mem = twin.check(items, now);
            EXPECT_EQ(lua.allowed, mem.allowed) << "step " << i;
            EXPECT_EQ(lua.tightest, mem.tightest) << "step " << i;
            EXPECT_EQ(lua.results.size(), mem.results.size());
            for (std::size_t k = 0; k < items.size() && k < lua.results.size(); ++k) {
                const auto& l = lua.results[k];
                const auto& m = mem.results[k];
                EXPECT_EQ(l.allowed, m.allowed) << "step " << i << " item " << k;
                EXPECT_EQ(l.remaining, m.remaining) << "step " << i << " item " << k;
                EXPECT_NEAR(l.reset_seconds, m.reset_seconds, 1e-6)
                    << "step " << i << " item " << k;
                EXPECT_NEAR(l.retry_after_seconds, m.retry_after_seconds, 1e-6)
                    << "step " << i << " item " << k;
            }
            if (::testing::Test::HasFailure())
                break;  // one divergence is enough to read
            (lua.allowed ? allowed : denied)++;
        }
        return {allowed, denied};
    }

    static inline std::unique_ptr<rlp_test::redis_server> server_;
    // Unique keys for this test, in one hash-tag slot.
    const std::string p_ = "{t" + rlp_test::random_hex(6) + "}:";
    rlp_test::checker check_ = [](std::span<const limit::check_item> items, std::int64_t now) {
        return eval(items, now);
    };
    rlp_test::policy_items items_;
};

// ---- Edge cases (the same ones memory_store_test runs on the twin).

TEST_F(PolicyScriptTest, TokenBucketSpendsBurstThenRefillsAfterExactlyOneOverRate) {
    rlp_test::token_bucket_spends_burst_then_refills_after_one_over_rate(check_, p_,
                                                                         algorithm::token_bucket);
}

TEST_F(PolicyScriptTest, GcraSpendsBurstThenRefillsAfterExactlyOneOverRate) {
    rlp_test::token_bucket_spends_burst_then_refills_after_one_over_rate(check_, p_,
                                                                         algorithm::gcra);
}

TEST_F(PolicyScriptTest, TokenBucketChargesCostAboveOne) {
    rlp_test::token_bucket_cost_above_one(check_, p_, algorithm::token_bucket);
}

TEST_F(PolicyScriptTest, GcraChargesCostAboveOne) {
    rlp_test::token_bucket_cost_above_one(check_, p_, algorithm::gcra);
}

TEST_F(PolicyScriptTest, SlidingWindowWeighsThePreviousWindowAcrossABoundary) {
    rlp_test::sliding_window_weighs_previous_window_across_boundary(check_, p_);
}

TEST_F(PolicyScriptTest, FixedWindowResetsExactlyAtTheBoundary) {
    rlp_test::fixed_window_resets_exactly_at_boundary(check_, p_);
}

TEST_F(PolicyScriptTest, DayWindowResetsAtMidnightUtc) {
    rlp_test::day_window_resets_at_midnight_utc(check_, p_);
}

TEST_F(PolicyScriptTest, CalendarMonthRollsFromJan31ToFeb1AndKnowsLeapYears) {
    rlp_test::calendar_month_rolls_over_and_knows_leap_years(check_, p_);
}

TEST_F(PolicyScriptTest, DeniedMultiItemRequestConsumesNothingFromAnyItem) {
    rlp_test::denied_multi_item_request_consumes_nothing(check_, p_);
}

TEST_F(PolicyScriptTest, ShadowItemThatDeniesDoesNotBlock) {
    rlp_test::shadow_item_that_denies_does_not_block(check_, p_);
}

TEST_F(PolicyScriptTest, ConcurrencyCountsLiveLeasesUntilTheyExpire) {
    rlp_test::concurrency_counts_live_leases_until_they_expire(check_, p_);
}

TEST_F(PolicyScriptTest, ConcurrencySlotNotTakenWhenAnotherPolicyDenies) {
    rlp_test::concurrency_slot_not_taken_when_another_policy_denies(check_, p_);
}

// Concurrency is not a pure function of (items, time) as the other algorithms are: releases
// and renewals come between checks. So the sequence here mixes acquires, releases (ZREM vs
// memory_store::release) and renewals (ZADD XX INCR vs memory_store::renew), the way
// redis_limiter and the memory limiter issue them, and demands the same decisions and the
// same live lease count after every step.
TEST_F(PolicyScriptTest, ConcurrencyMatchesMemoryStoreAcrossAcquiresReleasesAndRenewals) {
    limit::memory_store twin;
    auto cc = items_.make(algorithm::concurrency, p_ + "cc", 3, 2);  // 3 slots, 2 s lease
    const auto fw = items_.make(algorithm::fixed_window, p_ + "fw", 40, 10);
    std::mt19937_64 rng(7);
    std::vector<std::string> held;
    std::vector<std::int64_t> expiry;  // of each held lease
    std::int64_t now = 1'800'000'000LL * sec;
    int allowed = 0, denied = 0, counter = 0;
    for (int step = 0; step < 400 && !HasFailure(); ++step) {
        now += std::uniform_int_distribution<std::int64_t>(0, 400'000)(rng);
        const int op = std::uniform_int_distribution<int>(0, 9)(rng);
        if (op < 6) {
            const std::string id = "lease-" + std::to_string(++counter);
            cc.lease_id = id;
            const std::vector<limit::check_item> items{cc, fw};
            const auto lua = eval(items, now);
            const auto mem = twin.check(items, now);
            EXPECT_EQ(lua.allowed, mem.allowed) << "step " << step;
            for (std::size_t k = 0; k < items.size(); ++k) {
                EXPECT_EQ(lua.results[k].allowed, mem.results[k].allowed) << "step " << step;
                EXPECT_EQ(lua.results[k].remaining, mem.results[k].remaining) << "step " << step;
                EXPECT_NEAR(lua.results[k].reset_seconds, mem.results[k].reset_seconds, 1e-6);
                EXPECT_NEAR(lua.results[k].retry_after_seconds, mem.results[k].retry_after_seconds,
                            1e-6);
            }
            if (lua.allowed) {
                held.push_back(id);
                expiry.push_back(now + 2 * sec);
            }
            (lua.allowed ? allowed : denied)++;
        } else if (op < 8 && !held.empty()) {
            const auto pick = std::uniform_int_distribution<std::size_t>(0, held.size() - 1)(rng);
            redis({"ZREM", p_ + "cc", held[pick]});
            twin.release(p_ + "cc", held[pick]);
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(pick));
            expiry.erase(expiry.begin() + static_cast<std::ptrdiff_t>(pick));
        } else {
            // As the worker's timer does: live leases only (it renews every third of the
            // lease time, so a running request's lease never lapses while Redis answers).
            for (std::size_t k = 0; k < held.size(); ++k) {
                if (expiry[k] < now)
                    continue;
                redis({"ZADD", p_ + "cc", "XX", "INCR", "500000", held[k]});
                twin.renew(p_ + "cc", held[k], 500'000);
                expiry[k] += 500'000;
            }
        }
        EXPECT_EQ(redis({"ZCOUNT", p_ + "cc", std::to_string(now), "+inf"}),
                  std::to_string(twin.live_leases(p_ + "cc", now)))
            << "step " << step;
    }
    // Both outcomes were exercised.
    EXPECT_GT(allowed, 50);
    EXPECT_GT(denied, 20);
}

TEST_F(PolicyScriptTest, ConcurrencyStoresLeasesAsASortedSetOfExpiries) {
    auto cc = items_.make(algorithm::concurrency, p_ + "cc", 5, 30);
    cc.lease_id = "inst:0:1";
    const std::int64_t now = 1'800'000'000LL * sec;
    ASSERT_TRUE(eval({&cc, 1}, now).allowed);
    EXPECT_EQ(redis({"TYPE", p_ + "cc"}), "zset");
    EXPECT_EQ(redis({"ZSCORE", p_ + "cc", "inst:0:1"}), std::to_string(now + 30 * sec));
    // Two lease times and a second.
    const auto pttl = std::stoll(redis({"PTTL", p_ + "cc"}));
    EXPECT_GT(pttl, 60'000);
    EXPECT_LE(pttl, 61'000);
    // An expired lease is dropped when the next one is taken.
    cc.lease_id = "inst:0:2";
    ASSERT_TRUE(eval({&cc, 1}, now + 31 * sec).allowed);
    EXPECT_EQ(redis({"ZCARD", p_ + "cc"}), "1");
}

// ---- Storage: what policy_script.hpp promises the admin API.

TEST_F(PolicyScriptTest, StoresTheLayoutTheProtocolDocuments) {
    const std::vector<limit::check_item> items{
        items_.make(algorithm::token_bucket, p_ + "tb", 10, 10, 5),  // 1/s, capacity 5
        items_.make(algorithm::gcra, p_ + "gcra", 4, 1),             // T = 250000 µs
        items_.make(algorithm::sliding_window, p_ + "sw", 10, 60),
        items_.make(algorithm::fixed_window, p_ + "fw", 10, 60),
    };
    const std::int64_t now = 1'800'000'030LL * sec;  // 30 s into a 60 s window
    ASSERT_TRUE(eval(items, now).allowed);

    EXPECT_EQ(redis({"TYPE", p_ + "tb"}), "hash");
    EXPECT_EQ(redis({"HLEN", p_ + "tb"}), "2");
    EXPECT_EQ(redis({"HGET", p_ + "tb", "tokens"}), "4.000000000000");
    EXPECT_EQ(redis({"HGET", p_ + "tb", "ts"}), std::to_string(now));

    EXPECT_EQ(redis({"TYPE", p_ + "gcra"}), "string");
    EXPECT_EQ(redis({"GET", p_ + "gcra"}), std::to_string(now + 250'000) + ".000000");

    EXPECT_EQ(redis({"HLEN", p_ + "sw"}), "3");
    EXPECT_EQ(redis({"HGET", p_ + "sw", "w"}), std::to_string(1'800'000'000LL * sec));
    EXPECT_EQ(redis({"HGET", p_ + "sw", "c"}), "1");
    EXPECT_EQ(redis({"HGET", p_ + "sw", "p"}), "0");

    EXPECT_EQ(redis({"HLEN", p_ + "fw"}), "2");
    EXPECT_EQ(redis({"HGET", p_ + "fw", "w"}), std::to_string(1'800'000'000LL * sec));
    EXPECT_EQ(redis({"HGET", p_ + "fw", "c"}), "1");

    // Expiries follow Redis's own clock, so only their size can be checked: tb full again
    // in 1 s (+1 s), gcra in 0.25 s (+1 s), sw 2 windows (+1 s), fw its window's end (+1 s).
    const auto pttl = [&](const std::string& k) { return std::stoll(redis({"PTTL", p_ + k})); };
    EXPECT_GT(pttl("tb"), 1000);
    EXPECT_LE(pttl("tb"), 2000);
    EXPECT_GT(pttl("gcra"), 1000);
    EXPECT_LE(pttl("gcra"), 1250);
    EXPECT_GT(pttl("sw"), 120'000);
    EXPECT_LE(pttl("sw"), 121'000);
    EXPECT_GT(pttl("fw"), 30'000);
    EXPECT_LE(pttl("fw"), 31'000);
}

TEST_F(PolicyScriptTest, DeniedCheckWritesNothingNotEvenTheRefreshedTimestamp) {
    const std::vector<limit::check_item> items{
        items_.make(algorithm::token_bucket, p_ + "tb", 10, 10),
        items_.make(algorithm::fixed_window, p_ + "fw", 1, 60),
    };
    const std::int64_t t = 1'800'000'000LL * sec;
    ASSERT_TRUE(eval(items, t).allowed);
    const auto tokens = redis({"HGET", p_ + "tb", "tokens"});
    EXPECT_FALSE(eval(items, t + 5 * sec).allowed);
    EXPECT_EQ(redis({"HGET", p_ + "tb", "ts"}), std::to_string(t));
    EXPECT_EQ(redis({"HGET", p_ + "tb", "tokens"}), tokens);
    EXPECT_EQ(redis({"HGET", p_ + "fw", "c"}), "1");
}

TEST_F(PolicyScriptTest, ReturnsOnePlusFourFieldsPerItemWithFractionsAsStrings) {
    const std::vector<limit::check_item> items{
        items_.make(algorithm::token_bucket, p_ + "a", 3, 1),  // reset 1/3 s after one request
        items_.make(algorithm::sliding_window, p_ + "b", 5, 10),
    };
    EXPECT_EQ(eval_raw(items, 1'800'000'000LL * sec),
              "1\n1\n2\n0.333333\n0.000000\n1\n4\n20.000000\n0.000000");
}

TEST_F(PolicyScriptTest, UsesRedisTimeWhenNoTimeIsGiven) {
    const std::vector<limit::check_item> items{
        items_.make(algorithm::token_bucket, p_ + "tb", 10, 10),
        items_.make(algorithm::gcra, p_ + "gcra", 10, 10),
        items_.make(algorithm::sliding_window, p_ + "sw", 10, 60),
        items_.make(algorithm::fixed_window, p_ + "fw", 10, 3600),
    };
    const auto before = limit::unix_micros();
    const auto d = eval(items, std::nullopt);
    const auto after = limit::unix_micros();
    EXPECT_TRUE(d.allowed);
    for (const auto& r : d.results)
        EXPECT_EQ(r.remaining, 9);
    for (const auto* k : {"tb", "gcra", "sw", "fw"})
        EXPECT_GT(std::stoll(redis({"PTTL", p_ + k})), 0) << k;
    // The stored times are Redis's clock (same machine: within this call).
    const auto ts = std::stoll(redis({"HGET", p_ + "tb", "ts"}));
    EXPECT_GE(ts, before - 1000);
    EXPECT_LE(ts, after + 1000);
    const std::int64_t hour = 3600 * sec;
    EXPECT_EQ(std::stoll(redis({"HGET", p_ + "fw", "w"})), ts / hour * hour);
}

TEST_F(PolicyScriptTest, KeyHoldingAnotherTypeIsReplacedNotAnError) {
    redis({"SET", p_ + "x", "1800000000000000"});  // e.g. the policy used to be gcra
    const auto tb = items_.make(algorithm::token_bucket, p_ + "x", 10, 10);
    const auto d = eval({&tb, 1}, 1'800'000'000LL * sec);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.results[0].remaining, 9);
    EXPECT_EQ(redis({"TYPE", p_ + "x"}), "hash");
}

// ---- Equivalence with memory_store on seeded random sequences.

TEST_F(PolicyScriptTest, TokenBucketMatchesMemoryStoreOnARandomSequence) {
    const auto [allowed, denied] =
        expect_equivalent({items_.make(algorithm::token_bucket, p_ + "tb", 25, 10, 7)},
                          1'700'000'000LL * sec, 900'000, 300, 1);
    EXPECT_GT(allowed, 50);
    EXPECT_GT(denied, 50);
}

TEST_F(PolicyScriptTest, GcraMatchesMemoryStoreOnARandomSequence) {
    // T = 333333.33 µs: a rate that is not a whole number of microseconds.
    const auto [allowed, denied] =
        expect_equivalent({items_.make(algorithm::gcra, p_ + "gcra", 3, 1, 5)},
                          1'700'000'000LL * sec, 700'000, 300, 2);
    EXPECT_GT(allowed, 50);
    EXPECT_GT(denied, 50);
}

TEST_F(PolicyScriptTest, SlidingWindowMatchesMemoryStoreOnARandomSequence) {
    const auto [allowed, denied] =
        expect_equivalent({items_.make(algorithm::sliding_window, p_ + "sw", 12, 10)},
                          1'700'000'003LL * sec, 2'500'000, 300, 3);
    EXPECT_GT(allowed, 50);
    EXPECT_GT(denied, 50);
}

TEST_F(PolicyScriptTest, FixedWindowMatchesMemoryStoreOnARandomSequence) {
    const auto [allowed, denied] =
        expect_equivalent({items_.make(algorithm::fixed_window, p_ + "fw", 8, 7)},
                          1'700'000'000LL * sec, 2'000'000, 300, 4);
    EXPECT_GT(allowed, 50);
    EXPECT_GT(denied, 50);
}

TEST_F(PolicyScriptTest, CalendarMonthMatchesMemoryStoreOnARandomSequence) {
    // Steps of up to 3 days from 2024-01-01 cross a year of month ends, Feb 29 included.
    const auto [allowed, denied] = expect_equivalent(
        {items_.make(algorithm::fixed_window, p_ + "m", 25, 0, 0, 1, false, true)},
        1'704'067'200LL * sec, 3 * 86400 * sec, 250, 5);
    EXPECT_GT(allowed, 50);
    EXPECT_GT(denied, 50);
}

TEST_F(PolicyScriptTest, MixedThreeItemCheckMatchesMemoryStoreOnARandomSequence) {
    const auto [allowed, denied] = expect_equivalent(
        {
            items_.make(algorithm::token_bucket, p_ + "tb", 10, 5, 4),
            items_.make(algorithm::sliding_window, p_ + "sw", 30, 20, 0, 1, true),  // shadow
            items_.make(algorithm::fixed_window, p_ + "fw", 40, 30),
        },
        1'700'000'000LL * sec, 800'000, 400, 6);
    EXPECT_GT(allowed, 50);
    EXPECT_GT(denied, 50);
}

}  // namespace

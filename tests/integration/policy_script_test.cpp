#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "policy_checks.hpp"
#include "process.hpp"
#include "ratelimit_proxy/limit/keys.hpp"
#include "ratelimit_proxy/limit/lua_scripts.hpp"
#include "ratelimit_proxy/limit/memory_store.hpp"
#include "ratelimit_proxy/limit/redis_limiter.hpp"
#include "ratelimit_proxy/redis/circuit_breaker.hpp"
#include "ratelimit_proxy/redis/connection.hpp"
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

    // One EVAL of settle.lua with redis_limiter's own arguments, at now_us: the raw reply.
    static std::string settle_raw(std::string_view mode, std::span<const limit::check_item> items,
                                  std::span<const double> amounts, std::string_view hold_id,
                                  const limit::usage_record* record, std::int64_t now_us) {
        std::vector<std::string> storage;
        std::vector<std::string_view> keys, args;
        limit::redis_limiter::settle_args(mode, items, amounts, hold_id, record, retention, storage,
                                          keys, args);
        std::vector<std::string> cmd{"EVAL", std::string(ratelimit_proxy::lua::settle),
                                     std::to_string(keys.size())};
        cmd.insert(cmd.end(), keys.begin(), keys.end());
        cmd.insert(cmd.end(), args.begin(), args.end());
        cmd[3 + keys.size() + 1] = std::to_string(now_us);  // ARGV[2]: the time
        return server_->command(cmd);
    }
    // Its reply as budget states; nullopt if it is not 3 strings per item (an error reply).
    static std::optional<std::vector<limit::budget_state>> settle_eval(
        std::string_view mode, std::span<const limit::check_item> items,
        std::span<const double> amounts, std::string_view hold_id,
        const limit::usage_record* record, std::int64_t now_us) {
        const auto flat = settle_raw(mode, items, amounts, hold_id, record, now_us);
        std::vector<std::string> lines;
        std::istringstream in(flat);
        for (std::string l; std::getline(in, l);)
            lines.push_back(l);
        if (lines.size() != 3 * items.size())
            return std::nullopt;
        std::vector<limit::budget_state> out(items.size());
        for (std::size_t i = 0; i < items.size(); ++i) {
            out[i].used = std::stod(lines[3 * i]);
            out[i].held = std::stod(lines[3 * i + 1]);
            out[i].reset_seconds = std::stod(lines[3 * i + 2]);
        }
        return out;
    }

    // The same scenario against the script and against the twin.
    struct lua_side {
        limit::decision check(std::span<const limit::check_item> items, std::int64_t now) {
            return eval(items, now);
        }
        std::optional<std::vector<limit::budget_state>> budget(
            std::string_view mode, std::span<const limit::check_item> items,
            std::span<const double> amounts, std::string_view hold_id, std::int64_t now,
            const limit::usage_record* record = nullptr) {
            return settle_eval(mode, items, amounts, hold_id, record, now);
        }
    };
    struct twin_side {
        limit::memory_store store;
        limit::decision check(std::span<const limit::check_item> items, std::int64_t now) {
            return store.check(items, now);
        }
        std::optional<std::vector<limit::budget_state>> budget(
            std::string_view mode, std::span<const limit::check_item> items,
            std::span<const double> amounts, std::string_view hold_id, std::int64_t now,
            const limit::usage_record* record = nullptr) {
            if (mode == "credit")
                return store.credit(items, amounts, now);
            if (mode == "peek")
                return store.peek(items, now);
            auto out = store.settle(items, amounts, hold_id, now);
            if (record)
                store.add_usage(*record, retention.count(), now);
            return out;
        }
    };
    // Runs f on the script (keys under `lua_prefix`) and on a fresh twin (`twin_prefix`).
    template <class F>
    void on_both(F f) {
        {
            SCOPED_TRACE("policies.lua / settle.lua");
            lua_side side;
            f(side, p_ + "lua:");
        }
        {
            SCOPED_TRACE("memory_store");
            twin_side side;
            f(side, p_ + "mem:");
        }
    }

    // A metered item: reservations held (fw) or consumed (buckets) under a hold id.
    limit::check_item metered(algorithm algo, std::string key, double limit_, double window,
                              limit::calendar period = limit::calendar::none,
                              double hold_seconds = 900, double burst = 0) {
        auto it = items_.make(algo, std::move(key), limit_, window, burst);
        it.numbers.period = period;
        it.metered = true;
        it.hold_seconds = hold_seconds;
        return it;
    }

    static constexpr std::chrono::seconds retention{86400 * 3};

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

// ---- Metered budgets: holds, calendar windows, settle.lua, and the twin's equivalents.

TEST_F(PolicyScriptTest, HoldsFillBudgetDeniedAsHeldOut) {
    on_both([&](auto& side, const std::string& p) {
        auto fw = metered(algorithm::fixed_window, p + "fw", 100, 3600);
        const std::int64_t t = 1'800'000'000LL * sec;
        fw.hold_id = "req-a";
        fw.cost = 60;
        auto a = side.check({&fw, 1}, t);
        ASSERT_TRUE(a.allowed);
        EXPECT_EQ(a.results[0].remaining, 40);
        fw.hold_id = "req-b";
        fw.cost = 50;
        auto b = side.check({&fw, 1}, t + sec);
        EXPECT_FALSE(b.allowed);
        EXPECT_FALSE(b.results[0].allowed);
        EXPECT_TRUE(b.results[0].held_out);
        EXPECT_DOUBLE_EQ(b.results[0].retry_after_seconds, 1);
        EXPECT_EQ(b.results[0].remaining, 40);
        // What does fit is allowed: 60 held + 40.
        fw.cost = 40;
        auto c = side.check({&fw, 1}, t + sec);
        EXPECT_TRUE(c.allowed);
        EXPECT_EQ(c.results[0].remaining, 0);
        // Over the limit on its own: a plain denial until the window's end, not held_out.
        fw.hold_id = "req-c";
        fw.cost = 101;
        auto d = side.check({&fw, 1}, t + sec);
        EXPECT_FALSE(d.results[0].held_out);
        EXPECT_DOUBLE_EQ(d.results[0].retry_after_seconds, d.results[0].reset_seconds);
        // Nothing was counted yet, only held.
        const auto state = side.budget("peek", {&fw, 1}, {}, "", t + sec);
        ASSERT_TRUE(state);
        EXPECT_EQ((*state)[0].used, 0);
        EXPECT_EQ((*state)[0].held, 100);
    });
    // The layout the protocol documents.
    const auto key = p_ + "lua:fw";
    const std::int64_t t = 1'800'000'000LL * sec;
    EXPECT_EQ(redis({"HGET", key, "h:req-a"}), "60 " + std::to_string(t + 900 * sec));
    EXPECT_EQ(redis({"HGET", key, "c"}), "0");
    const auto pttl = std::stoll(redis({"PTTL", key}));
    EXPECT_GT(pttl, 0);
    EXPECT_LE(pttl, 3600'000 + 1000);
}

TEST_F(PolicyScriptTest, SettleChargesActualAndReleasesHold) {
    on_both([&](auto& side, const std::string& p) {
        auto fw = metered(algorithm::fixed_window, p + "fw", 100, 3600);
        auto tb = metered(algorithm::token_bucket, p + "tb", 3600, 3600, limit::calendar::none, 900,
                          100);  // 1 per second, capacity 100
        const std::int64_t t = 1'800'000'000LL * sec;
        fw.hold_id = tb.hold_id = "req-a";
        fw.cost = tb.cost = 60;
        const std::vector<limit::check_item> both{fw, tb};
        ASSERT_TRUE(side.check(both, t).allowed);
        const std::vector<double> actual{25, 25};
        const auto settled = side.budget("settle", both, actual, "req-a", t);
        ASSERT_TRUE(settled);
        EXPECT_EQ((*settled)[0].used, 25);
        EXPECT_EQ((*settled)[0].held, 0);
        EXPECT_EQ((*settled)[1].used, 25);  // 60 taken, 35 given back
        EXPECT_DOUBLE_EQ((*settled)[1].reset_seconds, 25);
        // The rest of the budget is free again: 25 + 75 = 100, one more is too many.
        fw.hold_id = "req-b";
        fw.cost = 76;
        auto over = side.check({&fw, 1}, t);
        EXPECT_FALSE(over.allowed);
        EXPECT_FALSE(over.results[0].held_out);
        fw.cost = 75;
        EXPECT_TRUE(side.check({&fw, 1}, t).allowed);
        // More used than reserved: a bucket goes into debt.
        tb.hold_id = "req-c";
        tb.cost = 10;
        ASSERT_TRUE(side.check({&tb, 1}, t).allowed);
        const std::vector<double> heavy{200};
        const auto debt = side.budget("settle", {&tb, 1}, heavy, "req-c", t);
        ASSERT_TRUE(debt);
        EXPECT_EQ((*debt)[0].used, 225);  // level 75 - 10, then + 10 - 200: -125
        tb.cost = 1;
        const auto refused = side.check({&tb, 1}, t + 100 * sec);
        EXPECT_FALSE(refused.allowed);
        EXPECT_DOUBLE_EQ(refused.results[0].retry_after_seconds, 26);  // from -25 to 1
    });
    EXPECT_EQ(redis({"HEXISTS", p_ + "lua:fw", "h:req-a"}), "0");
    EXPECT_EQ(redis({"HGET", p_ + "lua:fw", "c"}), "25");
    EXPECT_EQ(redis({"HGET", p_ + "lua:tb", "tokens"}), "-125.000000000000");
}

TEST_F(PolicyScriptTest, ExpiredHoldIsReclaimed) {
    on_both([&](auto& side, const std::string& p) {
        auto fw = metered(algorithm::fixed_window, p + "fw", 100, 3600, limit::calendar::none, 1);
        const std::int64_t t = 1'800'000'000LL * sec;
        fw.hold_id = "dies";
        fw.cost = 60;
        ASSERT_TRUE(side.check({&fw, 1}, t).allowed);
        fw.hold_id = "next";
        fw.cost = 50;
        EXPECT_TRUE(side.check({&fw, 1}, t + sec / 2).results[0].held_out);
        // Live up to its expiry included.
        EXPECT_TRUE(side.check({&fw, 1}, t + sec).results[0].held_out);
        auto later = side.check({&fw, 1}, t + sec + 1);
        EXPECT_TRUE(later.allowed);
        EXPECT_EQ(later.results[0].remaining, 50);
        // Settling the dead hold later charges what was used, and no hold comes back.
        const std::vector<double> used{10};
        fw.cost = 60;
        const auto s = side.budget("settle", {&fw, 1}, used, "dies", t + 3 * sec);
        ASSERT_TRUE(s);
        EXPECT_EQ((*s)[0].used, 10);
        EXPECT_EQ((*s)[0].held, 0);  // "next" has expired too by now (1 s)
    });
    // The dead hold was dropped from the hash when "next" was written.
    EXPECT_EQ(redis({"HEXISTS", p_ + "lua:fw", "h:dies"}), "0");
}

TEST_F(PolicyScriptTest, WeekWindowStartsMonday) {
    // 2024-01-01 00:00 UTC was a Monday.
    const std::int64_t monday = 1'704'067'200LL * sec;
    on_both([&](auto& side, const std::string& p) {
        auto week = items_.make(algorithm::fixed_window, p + "wk", 2, 0);
        week.numbers.period = limit::calendar::week;
        const std::int64_t wednesday = monday + 2 * 86400 * sec + 5 * 3600 * sec;
        auto first = side.check({&week, 1}, wednesday);
        ASSERT_TRUE(first.allowed);
        EXPECT_DOUBLE_EQ(first.results[0].reset_seconds, (5 * 86400.0 - 5 * 3600));
        ASSERT_TRUE(side.check({&week, 1}, wednesday).allowed);
        const std::int64_t sunday_late = monday + 7 * 86400 * sec - sec;
        auto full = side.check({&week, 1}, sunday_late);
        EXPECT_FALSE(full.allowed);
        EXPECT_DOUBLE_EQ(full.results[0].retry_after_seconds, 1);
        EXPECT_TRUE(side.check({&week, 1}, monday + 7 * 86400 * sec).allowed);

        // A metered week: settled usage counts until the next Monday.
        auto budget = metered(algorithm::fixed_window, p + "mwk", 1000, 0, limit::calendar::week);
        budget.hold_id = "r";
        budget.cost = 500;
        ASSERT_TRUE(side.check({&budget, 1}, wednesday).allowed);
        const std::vector<double> used{321};
        ASSERT_TRUE(side.budget("settle", {&budget, 1}, used, "r", wednesday));
        const auto sunday = side.budget("peek", {&budget, 1}, {}, "", sunday_late);
        ASSERT_TRUE(sunday);
        EXPECT_EQ((*sunday)[0].used, 321);
        EXPECT_DOUBLE_EQ((*sunday)[0].reset_seconds, 1);
        const auto next = side.budget("peek", {&budget, 1}, {}, "", monday + 7 * 86400 * sec);
        ASSERT_TRUE(next);
        EXPECT_EQ((*next)[0].used, 0);
        EXPECT_DOUBLE_EQ((*next)[0].reset_seconds, 7 * 86400);
    });
    EXPECT_EQ(redis({"HGET", p_ + "lua:wk", "w"}), std::to_string(monday + 7 * 86400 * sec));
}

TEST_F(PolicyScriptTest, LifetimeNeverResets) {
    on_both([&](auto& side, const std::string& p) {
        auto life = items_.make(algorithm::fixed_window, p + "life", 3, 60);
        life.numbers.period = limit::calendar::lifetime;
        const std::int64_t t = 1'800'000'000LL * sec;
        for (int i = 0; i < 3; ++i)
            ASSERT_TRUE(side.check({&life, 1}, t + i * 400 * 86400 * sec).allowed) << i;
        auto later = side.check({&life, 1}, t + 20 * 365 * 86400LL * sec);
        EXPECT_FALSE(later.allowed);
        EXPECT_EQ(later.results[0].remaining, 0);
        EXPECT_DOUBLE_EQ(later.results[0].reset_seconds, 0);

        auto budget = metered(algorithm::fixed_window, p + "mlife", 1'000'000'000'000'000, 0,
                              limit::calendar::lifetime);
        budget.hold_id = "r";
        budget.cost = 400'000'000'000'000;
        ASSERT_TRUE(side.check({&budget, 1}, t).allowed);
        const std::vector<double> used{123'456'789'012'345};
        ASSERT_TRUE(side.budget("settle", {&budget, 1}, used, "r", t));
        const auto years = side.budget("peek", {&budget, 1}, {}, "", t + 10 * 365 * 86400LL * sec);
        ASSERT_TRUE(years);
        EXPECT_EQ((*years)[0].used, 123'456'789'012'345);  // exact, nano-USD
        EXPECT_EQ((*years)[0].reset_seconds, 0);
    });
    EXPECT_EQ(redis({"PTTL", p_ + "lua:life"}), "-1");
    EXPECT_EQ(redis({"PTTL", p_ + "lua:mlife"}), "-1");
    EXPECT_EQ(redis({"HGET", p_ + "lua:mlife", "c"}), "123456789012345");
}

TEST_F(PolicyScriptTest, CreditGivesRoomThisWindow) {
    on_both([&](auto& side, const std::string& p) {
        auto fw = metered(algorithm::fixed_window, p + "fw", 100, 3600);
        const std::int64_t t = 1'800'000'000LL * sec;
        fw.hold_id = "r";
        fw.cost = 100;
        ASSERT_TRUE(side.check({&fw, 1}, t).allowed);
        const std::vector<double> all{100};
        ASSERT_TRUE(side.budget("settle", {&fw, 1}, all, "r", t));
        fw.hold_id = "s";
        fw.cost = 10;
        EXPECT_FALSE(side.check({&fw, 1}, t).allowed);
        const std::vector<double> back{130};
        const auto credited = side.budget("credit", {&fw, 1}, back, "", t);
        ASSERT_TRUE(credited);
        EXPECT_EQ((*credited)[0].used, -30);  // extra room this window
        fw.cost = 130;
        auto big = side.check({&fw, 1}, t);
        EXPECT_TRUE(big.allowed);
        EXPECT_EQ(big.results[0].remaining, 0);
        // The next window starts from nothing, with no carried credit.
        const auto next = side.budget("peek", {&fw, 1}, {}, "", t + 3600 * sec);
        ASSERT_TRUE(next);
        EXPECT_EQ((*next)[0].used, 0);
        // Only a fixed window can be credited; nothing is written otherwise.
        auto tb = metered(algorithm::token_bucket, p + "tb", 10, 10);
        const std::vector<limit::check_item> mixed{fw, tb};
        const std::vector<double> amounts{5, 5};
        EXPECT_FALSE(side.budget("credit", mixed, amounts, "", t));
        const auto unchanged = side.budget("peek", {&fw, 1}, {}, "", t);
        ASSERT_TRUE(unchanged);
        EXPECT_EQ((*unchanged)[0].used, -30);
        EXPECT_EQ((*unchanged)[0].held, 130);
    });
    auto tb = metered(algorithm::token_bucket, p_ + "tb", 10, 10);
    const std::vector<double> five{5};
    EXPECT_NE(settle_raw("credit", {&tb, 1}, five, "", nullptr, 1'800'000'000LL * sec)
                  .find("credit needs a fixed window budget"),
              std::string::npos);
}

TEST_F(PolicyScriptTest, UsageRecordCountsPerModel) {
    const std::string prefix = "u" + rlp_test::random_hex(6);
    const std::string day = limit::utc_day(1'800'000'000);
    const std::string key = limit::usage_key(prefix, "0123456789abcdef", day);
    const std::string days = limit::usage_days_key(prefix, day);
    std::map<std::string, std::int64_t> twin_fields;
    on_both([&](auto& side, const std::string& p) {
        auto fw = metered(algorithm::fixed_window, p + "fw", 1e15, 86400);
        const std::int64_t t = 1'800'000'000LL * sec;
        limit::usage_record r;
        r.key = key;
        r.days_key = days;
        r.token_id = "0123456789abcdef";
        const auto settle = [&](std::string_view model, std::int64_t in, std::int64_t out,
                                std::int64_t usd, bool estimated) {
            r.model = model;
            r.input = in;
            r.cached_input = in / 2;
            r.cache_write = 3;
            r.output = out;
            r.nano_usd = usd;
            r.estimated = estimated;
            const std::vector<double> actual{static_cast<double>(usd)};
            ASSERT_TRUE(side.budget("settle", {&fw, 1}, actual, "x", t, &r));
        };
        settle("gpt-4o", 1000, 200, 123'456'789'012'345, false);
        settle("gpt-4o", 10, 20, 5, true);
        settle("claude-3-5-sonnet", 7, 9, 11, false);
        if constexpr (std::is_same_v<std::decay_t<decltype(side)>, twin_side>) {
            twin_fields = side.store.usage(key, t);
            EXPECT_EQ(side.store.usage_tokens(days, t), std::set<std::string>{"0123456789abcdef"});
            EXPECT_TRUE(side.store.usage(key, t + retention.count() * sec + 1).empty());
        }
    });
    // Redis: the same counters, exact.
    const std::map<std::string, std::int64_t> expected{
        {"gpt-4o|requests", 2},
        {"gpt-4o|input", 1010},
        {"gpt-4o|cached_input", 505},
        {"gpt-4o|cache_write", 6},
        {"gpt-4o|output", 220},
        {"gpt-4o|nano_usd", 123'456'789'012'350},
        {"gpt-4o|estimated", 1},
        {"claude-3-5-sonnet|requests", 1},
        {"claude-3-5-sonnet|input", 7},
        {"claude-3-5-sonnet|cached_input", 3},
        {"claude-3-5-sonnet|cache_write", 3},
        {"claude-3-5-sonnet|output", 9},
        {"claude-3-5-sonnet|nano_usd", 11},
        {"claude-3-5-sonnet|estimated", 0},
    };
    std::map<std::string, std::int64_t> stored;
    std::istringstream in(redis({"HGETALL", key}));
    for (std::string f, v; std::getline(in, f) && std::getline(in, v);)
        stored[f] = std::stoll(v);
    EXPECT_EQ(stored, expected);
    EXPECT_EQ(twin_fields, expected);
    EXPECT_EQ(redis({"SMEMBERS", days}), "0123456789abcdef");
    for (const auto& k : {key, days}) {
        const auto ttl = std::stoll(redis({"TTL", k}));
        EXPECT_GT(ttl, retention.count() - 10) << k;
        EXPECT_LE(ttl, retention.count()) << k;
    }
    // Usage only (no budget items) is a valid call too.
    limit::usage_record r;
    r.key = key;
    r.days_key = days;
    r.token_id = "fedcba9876543210";
    r.model = "gpt-4o";
    r.input = 1;
    EXPECT_EQ(settle_raw("settle", {}, {}, "y", &r, 1'800'000'000LL * sec), "");
    EXPECT_EQ(redis({"HGET", key, "gpt-4o|requests"}), "3");
    EXPECT_EQ(redis({"SCARD", days}), "2");
}

// Random sequences of metered checks (holds taken, some left to expire), settlements (less or
// more than reserved), reads and credits: the scripts and the twin must agree at every step.
// `scale` multiplies every amount: 1 for tokens, ~1e9 for nano-USD (exactness).
class MeteredEquivalence : public PolicyScriptTest {
  protected:
    void run(double scale, std::uint32_t seed, const std::string& tag) {
        const std::string p = p_ + tag;
        std::vector<limit::check_item> base{
            metered(algorithm::fixed_window, p + "fw", 1000 * scale, 60, limit::calendar::none, 15),
            metered(algorithm::fixed_window, p + "wk", 6000 * scale, 0, limit::calendar::week, 15),
            metered(algorithm::fixed_window, p + "life", 40000 * scale, 0,
                    limit::calendar::lifetime, 15),
            metered(algorithm::token_bucket, p + "tb", 600 * scale, 60, limit::calendar::none, 5,
                    400 * scale),
            metered(algorithm::gcra, p + "gcra", 600 * scale, 60, limit::calendar::none, 5),
            metered(algorithm::sliding_window, p + "sw", 900 * scale, 30),
        };
        const std::vector<limit::check_item> fixed_windows(base.begin(), base.begin() + 3);
        struct pending {
            std::string id;
            std::vector<double> reserved;
        };
        std::deque<pending> open;
        limit::memory_store twin;
        std::mt19937_64 rng(seed);
        auto uniform = [&](std::int64_t lo, std::int64_t hi) {
            return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
        };
        // 2024-01-06, a Saturday: the weeks turn over a few times.
        std::int64_t now = 1'704'499'200LL * sec;
        int allowed = 0, denied = 0, held_out = 0, settled = 0, counter = 0;
        for (int step = 0; step < 500 && !HasFailure(); ++step) {
            now += uniform(0, 10) == 0 ? uniform(0, 2 * 86400) * sec : uniform(0, 2 * sec);
            const auto op = uniform(0, 9);
            if (op < 6 || open.empty()) {
                const std::string id = "h" + std::to_string(++counter);
                // Random subsets of the budgets (at least one), random reservations.
                std::vector<limit::check_item> items;
                std::vector<double> reserved;
                for (auto it : base) {
                    if (uniform(0, 2) == 0)
                        continue;
                    it.hold_id = id;
                    // Not round in nano-USD: exactness shows in the last digits.
                    it.cost = static_cast<double>(uniform(1, 300)) * scale +
                              (scale > 1 ? uniform(0, 999) : 0);
                    reserved.push_back(it.cost);
                    items.push_back(it);
                }
                if (items.empty())
                    continue;
                const auto lua = eval(items, now);
                const auto mem = twin.check(items, now);
                ASSERT_EQ(lua.allowed, mem.allowed) << "step " << step;
                ASSERT_EQ(lua.results.size(), mem.results.size()) << "step " << step;
                for (std::size_t k = 0; k < items.size(); ++k) {
                    const auto& l = lua.results[k];
                    const auto& m = mem.results[k];
                    EXPECT_EQ(l.allowed, m.allowed) << "step " << step << " item " << k;
                    EXPECT_EQ(l.held_out, m.held_out) << "step " << step << " item " << k;
                    EXPECT_EQ(l.remaining, m.remaining) << "step " << step << " item " << k;
                    EXPECT_NEAR(l.reset_seconds, m.reset_seconds, 1e-6) << "step " << step;
                    EXPECT_NEAR(l.retry_after_seconds, m.retry_after_seconds, 1e-6)
                        << "step " << step;
                    held_out += l.held_out ? 1 : 0;
                }
                (lua.allowed ? allowed : denied)++;
                // Some requests are never settled: their holds expire.
                if (lua.allowed && uniform(0, 5) != 0) {
                    open.push_back({id, reserved});
                    pending_items_.push_back(items);
                }
                continue;
            }
            std::vector<limit::check_item> items;
            std::vector<double> amounts;
            std::string_view mode, hold;
            pending done;
            if (op < 8) {
                const auto pick = static_cast<std::size_t>(uniform(0, open.size() - 1));
                done = open[pick];
                items = pending_items_[pick];
                open.erase(open.begin() + static_cast<std::ptrdiff_t>(pick));
                pending_items_.erase(pending_items_.begin() + static_cast<std::ptrdiff_t>(pick));
                for (const auto r : done.reserved) {
                    // Mostly less than reserved, sometimes nothing, sometimes more.
                    const auto roll = uniform(0, 9);
                    amounts.push_back(roll == 0   ? 0
                                      : roll == 1 ? r + uniform(1, 50) * scale
                                                  : std::floor(r * uniform(0, 100) / 100));
                }
                mode = "settle";
                hold = done.id;
                ++settled;
            } else if (op == 8) {
                items = base;
                mode = "peek";
            } else {
                items = fixed_windows;
                for (std::size_t k = 0; k < items.size(); ++k)
                    amounts.push_back(static_cast<double>(uniform(0, 100)) * scale);
                mode = "credit";
            }
            const auto lua = settle_eval(mode, items, amounts, hold, nullptr, now);
            const auto mem = mode == "settle"
                                 ? std::optional(twin.settle(items, amounts, hold, now))
                             : mode == "peek" ? std::optional(twin.peek(items, now))
                                              : twin.credit(items, amounts, now);
            ASSERT_TRUE(lua) << "step " << step << " " << mode;
            ASSERT_TRUE(mem) << "step " << step << " " << mode;
            for (std::size_t k = 0; k < items.size(); ++k) {
                EXPECT_EQ((*lua)[k].used, (*mem)[k].used)
                    << "step " << step << " " << mode << " item " << items[k].key;
                EXPECT_EQ((*lua)[k].held, (*mem)[k].held)
                    << "step " << step << " " << mode << " item " << items[k].key;
                EXPECT_NEAR((*lua)[k].reset_seconds, (*mem)[k].reset_seconds, 1e-6)
                    << "step " << step << " " << mode << " item " << items[k].key;
            }
        }
        // Every path was taken.
        EXPECT_GT(allowed, 50);
        EXPECT_GT(denied, 20);
        EXPECT_GT(held_out, 5);
        EXPECT_GT(settled, 30);
    }
    std::deque<std::vector<limit::check_item>> pending_items_;
};

TEST_F(MeteredEquivalence, TokenBudgetsMatchMemoryStoreOnARandomSequence) {
    run(1, 21, "tok:");
}

TEST_F(MeteredEquivalence, NanoUsdBudgetsMatchMemoryStoreExactlyOnARandomSequence) {
    run(1'000'003'001, 22, "usd:");
}

// ---- redis_limiter end to end: its own arguments, EVALSHA through redis::script, the
// connection's pipelining, and where a hold lives when Redis was away.

class RedisLimiterBudgetTest : public PolicyScriptTest {
  protected:
    void SetUp() override {
        ratelimit_proxy::redis::connection_options o;
        o.where.port = server_->port();
        o.command_timeout = std::chrono::seconds(2);
        conn_ = std::make_unique<ratelimit_proxy::redis::connection>(io_, o);
        conn_->start();
        run_until([&] { return conn_->connected(); });
        ASSERT_TRUE(conn_->connected());
        limiter_ = std::make_unique<limit::redis_limiter>(*conn_, policies_, settle_, breaker_,
                                                          fallback_, 1, false);
    }
    void TearDown() override {
        limiter_.reset();
        conn_->stop();
    }
    template <class Done>
    void run_until(Done done) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!done() && std::chrono::steady_clock::now() < deadline)
            io_.run_for(std::chrono::milliseconds(5));
    }
    limit::decision check(std::span<const limit::check_item> items) {
        std::optional<limit::decision> got;
        limiter_->check(items, [&](limit::decision&& d) { got = std::move(d); });
        run_until([&] { return got.has_value(); });
        EXPECT_TRUE(got);
        return got ? std::move(*got) : limit::decision{};
    }
    std::pair<bool, std::vector<limit::budget_state>> inspect(
        std::span<const limit::check_item> items) {
        std::optional<std::pair<bool, std::vector<limit::budget_state>>> got;
        limiter_->inspect(items, [&](bool ok, std::vector<limit::budget_state>&& s) {
            got.emplace(ok, std::move(s));
        });
        run_until([&] { return got.has_value(); });
        EXPECT_TRUE(got);
        return got ? std::move(*got) : std::pair<bool, std::vector<limit::budget_state>>{};
    }
    // A metered fixed window of 100 per day, counting `what`.
    limit::check_item budget(const std::string& key, limit::meter what) {
        auto& p = owned_.emplace_back();
        p.name = key;
        p.algo = algorithm::fixed_window;
        p.numbers = {100, 86400};
        p.what = what;
        limit::check_item it;
        it.source = &p;
        it.key = p_ + key;
        it.numbers = p.numbers;
        it.metered = true;
        it.hold_seconds = 900;
        return it;
    }

    boost::asio::io_context io_;
    std::unique_ptr<ratelimit_proxy::redis::connection> conn_;
    ratelimit_proxy::redis::script policies_{ratelimit_proxy::lua::policies};
    ratelimit_proxy::redis::script settle_{ratelimit_proxy::lua::settle};
    ratelimit_proxy::redis::circuit_breaker breaker_{3, std::chrono::seconds(60)};
    limit::shared_memory_store fallback_;
    std::unique_ptr<limit::redis_limiter> limiter_;
    std::deque<limit::policy> owned_;
};

TEST_F(RedisLimiterBudgetTest, SettlesAndInspectsThroughSettleLua) {
    auto tokens = budget("tokens", limit::meter::tokens);
    tokens.hold_id = "req-1";
    tokens.cost = 60;
    const auto d = check({&tokens, 1});
    ASSERT_TRUE(d.allowed);
    EXPECT_FALSE(d.decided_locally);
    EXPECT_EQ(redis({"HEXISTS", tokens.key, "h:req-1"}), "1");
    // A second request while the first is in flight: refused for the hold, retry in 1 s.
    auto second = tokens;
    second.hold_id = "req-2";
    second.cost = 50;
    const auto refused = check({&second, 1});
    EXPECT_FALSE(refused.allowed);
    EXPECT_TRUE(refused.results[0].held_out);
    EXPECT_DOUBLE_EQ(refused.results[0].retry_after_seconds, 1);

    const std::string day = limit::utc_day(limit::unix_micros() / 1'000'000);
    const std::string prefix = "u" + rlp_test::random_hex(6);
    const std::string usage = limit::usage_key(prefix, "0123456789abcdef", day);
    const std::string days = limit::usage_days_key(prefix, day);
    limit::usage_record record;
    record.key = usage;
    record.days_key = days;
    record.token_id = "0123456789abcdef";
    record.model = "gpt-4o";
    record.input = 20;
    record.output = 5;
    const std::vector<double> actual{25};
    limiter_->settle({&tokens, 1}, actual, "req-1", &record);
    // Pipelined on the same connection: the peek sees the settlement.
    const auto [ok, states] = inspect({&tokens, 1});
    ASSERT_TRUE(ok);
    ASSERT_EQ(states.size(), 1u);
    EXPECT_EQ(states[0].used, 25);
    EXPECT_EQ(states[0].held, 0);
    EXPECT_GT(states[0].reset_seconds, 0);
    EXPECT_LE(states[0].reset_seconds, 86400);
    EXPECT_EQ(redis({"HEXISTS", tokens.key, "h:req-1"}), "0");
    EXPECT_EQ(redis({"HGET", usage, "gpt-4o|input"}), "20");
    EXPECT_EQ(redis({"HGET", usage, "gpt-4o|requests"}), "1");
    EXPECT_EQ(redis({"SISMEMBER", days, "0123456789abcdef"}), "1");
    // Now the second request fits.
    EXPECT_TRUE(check({&second, 1}).allowed);
}

TEST_F(RedisLimiterBudgetTest, HoldTakenLocallyIsSettledLocallyAndMoneyFailsClosed) {
    for (int i = 0; i < 3; ++i)
        breaker_.record_failure();  // open: Redis is away for this minute
    ASSERT_TRUE(breaker_.is_open());
    auto usd = budget("usd", limit::meter::usd);
    usd.hold_id = "req-9";
    usd.cost = 10;
    const auto closed = check({&usd, 1});
    EXPECT_FALSE(closed.allowed);
    EXPECT_TRUE(closed.store_unavailable);

    auto tokens = budget("tokens", limit::meter::tokens);
    tokens.hold_id = "req-9";
    tokens.cost = 60;
    const auto local = check({&tokens, 1});
    ASSERT_TRUE(local.allowed);
    EXPECT_TRUE(local.decided_locally);
    EXPECT_EQ(fallback_.peek({&tokens, 1})[0].held, 60);
    limit::usage_record record;
    record.key = "{x}:usage:0123456789abcdef:2027-01-15";
    record.days_key = "{x}:usage-days:2027-01-15";
    record.token_id = "0123456789abcdef";
    record.model = "gpt-4o";
    record.output = 7;
    const std::vector<double> actual{33};
    limiter_->settle({&tokens, 1}, actual, "req-9", &record);
    const auto after = fallback_.peek({&tokens, 1});
    EXPECT_EQ(after[0].used, 33);
    EXPECT_EQ(after[0].held, 0);
    EXPECT_EQ(fallback_.usage(record.key).at("gpt-4o|output"), 7);
    EXPECT_EQ(redis({"EXISTS", tokens.key}), "0");  // Redis never saw it
    // inspect needs Redis.
    EXPECT_FALSE(inspect({&tokens, 1}).first);
}

}  // namespace

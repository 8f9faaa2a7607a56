#include <gtest/gtest.h>

#include "ratelimit_proxy/limit/deny_cache.hpp"

namespace limit = ratelimit_proxy::limit;
using namespace std::chrono_literals;

class DenyCacheTest : public ::testing::Test {
  protected:
    limit::policy burst_ = named("burst");
    limit::policy daily_ = named("daily");
    std::vector<limit::check_item> items_{item(burst_, "k:burst"), item(daily_, "k:daily")};
    limit::deny_cache cache_;
    limit::deny_cache::clock::time_point t0_ = limit::deny_cache::clock::now();

    static limit::policy named(const char* name) {
        limit::policy p;
        p.name = name;
        return p;
    }
    static limit::check_item item(const limit::policy& p, const char* key) {
        limit::check_item i;
        i.source = &p;
        i.key = key;
        return i;
    }
    // burst denies for `retry` seconds, daily allows.
    limit::decision denial(double retry) {
        limit::decision d;
        d.allowed = false;
        limit::policy_result b;
        b.source = &burst_;
        b.retry_after_seconds = retry;
        b.reset_seconds = retry;
        b.quota = 20;
        limit::policy_result y;
        y.source = &daily_;
        y.allowed = true;
        y.remaining = 500;
        y.quota = 1000;
        d.results = {b, y};
        d.choose_tightest();
        return d;
    }
};

TEST_F(DenyCacheTest, KnownDenialIsAnsweredUntilItsRetryTime) {
    cache_.remember(items_, denial(2.0), 1.0, t0_);
    limit::decision d;
    ASSERT_TRUE(cache_.lookup(items_, 1.0, t0_ + 500ms, d));
    EXPECT_FALSE(d.allowed);
    ASSERT_EQ(d.results.size(), 2u);
    EXPECT_EQ(d.tightest, 0);
    EXPECT_NEAR(d.results[0].retry_after_seconds, 1.5, 1e-6);
    EXPECT_EQ(d.results[1].remaining, 500);
    EXPECT_FALSE(cache_.lookup(items_, 1.0, t0_ + 2s, d));
}

TEST_F(DenyCacheTest, AnotherScaleOrAllowedDecisionsAreNotRemembered) {
    cache_.remember(items_, denial(5.0), 0.5, t0_);
    limit::decision d;
    EXPECT_FALSE(cache_.lookup(items_, 1.0, t0_ + 1s, d));
    EXPECT_TRUE(cache_.lookup(items_, 0.5, t0_ + 1s, d));

    limit::deny_cache fresh;
    auto allowed = denial(5.0);
    allowed.allowed = true;
    fresh.remember(items_, allowed, 1.0, t0_);
    auto local = denial(5.0);
    local.decided_locally = true;
    fresh.remember(items_, local, 1.0, t0_);
    EXPECT_EQ(fresh.size(), 0u);
}

TEST_F(DenyCacheTest, ADifferentRequestShapeReportsOnlyTheDenyingPolicy) {
    cache_.remember(items_, denial(3.0), 1.0, t0_);
    std::vector<limit::check_item> only_burst{items_[0]};
    limit::decision d;
    ASSERT_TRUE(cache_.lookup(only_burst, 1.0, t0_, d));
    ASSERT_EQ(d.results.size(), 1u);
    EXPECT_EQ(d.results[0].source, &burst_);
    std::vector<limit::check_item> only_daily{items_[1]};
    EXPECT_FALSE(cache_.lookup(only_daily, 1.0, t0_, d));
}

TEST_F(DenyCacheTest, ShadowItemsNeverAnswerFromTheCache) {
    cache_.remember(items_, denial(3.0), 1.0, t0_);
    auto shadowed = items_;
    shadowed[0].shadow = true;
    limit::decision d;
    EXPECT_FALSE(cache_.lookup(shadowed, 1.0, t0_, d));
}

TEST_F(DenyCacheTest, StaysBounded) {
    limit::deny_cache small(4);
    for (int i = 0; i < 10; ++i) {
        std::vector<limit::check_item> one{item(burst_, "")};
        one[0].key = "k" + std::to_string(i);
        limit::decision d;
        d.allowed = false;
        limit::policy_result r;
        r.source = &burst_;
        r.retry_after_seconds = 60;
        d.results = {r};
        small.remember(one, d, 1.0, t0_);
        EXPECT_LE(small.size(), 4u);
    }
}

TEST_F(DenyCacheTest, ConcurrencyDenialsAreNeverRememberedASlotCanFreeAnyMoment) {
    limit::policy slots = named("slots");
    slots.algo = limit::algorithm::concurrency;
    const std::vector<limit::check_item> items{item(slots, "k:slots")};
    limit::decision d;
    d.allowed = false;
    limit::policy_result r;
    r.source = &slots;
    r.retry_after_seconds = 1;
    r.reset_seconds = 1;
    r.quota = 2;
    d.results = {r};
    d.choose_tightest();
    cache_.remember(items, d, 1.0, t0_);
    limit::decision out;
    EXPECT_FALSE(cache_.lookup(items, 1.0, t0_, out));
    EXPECT_FALSE(cache_.lookup(items, 1.0, t0_ + 100ms, out));
}

TEST_F(DenyCacheTest, ChecksWithABudgetAreNeitherRememberedNorAnsweredFromTheCache) {
    cache_.remember(items_, denial(5.0), 1.0, t0_);
    auto with_budget = items_;
    limit::policy budget = named("daily_usd");
    budget.what = limit::meter::usd;
    auto b = item(budget, "k:daily_usd");
    b.metered = true;
    b.cost = 1000;
    with_budget.push_back(b);
    limit::decision out;
    // The same burst denial, but this request's own cost decides the budget: ask the store.
    EXPECT_FALSE(cache_.lookup(with_budget, 1.0, t0_ + 100ms, out));
    EXPECT_TRUE(cache_.lookup(items_, 1.0, t0_ + 100ms, out));

    limit::deny_cache fresh;
    auto d = denial(5.0);
    limit::policy_result r;
    r.source = &budget;
    r.allowed = true;
    r.quota = 5e9;
    d.results.push_back(r);
    fresh.remember(with_budget, d, 1.0, t0_);
    EXPECT_FALSE(fresh.lookup(items_, 1.0, t0_ + 100ms, out));
}

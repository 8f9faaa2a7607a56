#include <gtest/gtest.h>

#include "ratelimit_proxy/limit/memory_limiter.hpp"

namespace limit = ratelimit_proxy::limit;

class MemoryTokenBucket : public ::testing::Test {
  protected:
    limit::decision check(std::string_view key = "k", std::uint32_t cost = 1) {
        return limiter_.check_now(key, cost);
    }
    void advance_seconds(double s) { now_us_ += static_cast<std::int64_t>(s * 1e6); }

    std::int64_t now_us_ = 1'000'000'000;
    limit::policy policy_{"default", 5.0 / 60.0, 5};
    limit::memory_limiter limiter_{policy_, [this] { return now_us_; }};
};

TEST_F(MemoryTokenBucket, AllowsTheBurstThenDenies) {
    for (int i = 4; i >= 0; --i) {
        auto d = check();
        EXPECT_TRUE(d.allowed);
        EXPECT_EQ(d.remaining, i);
    }
    auto denied = check();
    EXPECT_FALSE(denied.allowed);
    EXPECT_EQ(denied.remaining, 0);
    EXPECT_NEAR(denied.retry_after_seconds, 12.0, 1e-9);
}

TEST_F(MemoryTokenBucket, DeniedRequestsConsumeNothing) {
    for (int i = 0; i < 5; ++i)
        check();
    for (int i = 0; i < 10; ++i)
        EXPECT_FALSE(check().allowed);
    advance_seconds(12);
    EXPECT_TRUE(check().allowed);
}

TEST_F(MemoryTokenBucket, RefillsAtTheConfiguredRate) {
    for (int i = 0; i < 5; ++i)
        check();
    advance_seconds(11.9);
    EXPECT_FALSE(check().allowed);
    advance_seconds(0.2);
    EXPECT_TRUE(check().allowed);
    EXPECT_FALSE(check().allowed);
}

TEST_F(MemoryTokenBucket, NeverExceedsCapacity) {
    advance_seconds(3600);
    auto d = check();
    EXPECT_EQ(d.remaining, 4);
    EXPECT_NEAR(d.reset_seconds, 12.0, 1e-9);
}

TEST_F(MemoryTokenBucket, KeysAreIndependent) {
    for (int i = 0; i < 5; ++i)
        check("a");
    EXPECT_FALSE(check("a").allowed);
    EXPECT_TRUE(check("b").allowed);
}

TEST_F(MemoryTokenBucket, CostTakesSeveralTokens) {
    EXPECT_TRUE(check("k", 3).allowed);
    auto d = check("k", 3);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.remaining, 2);
    EXPECT_TRUE(check("k", 2).allowed);
}

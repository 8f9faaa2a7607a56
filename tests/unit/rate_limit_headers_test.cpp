#include <gtest/gtest.h>

#include "ratelimit_proxy/limit/rate_limit_headers.hpp"

namespace limit = ratelimit_proxy::limit;

class RateLimitHeaders : public ::testing::Test {
  protected:
    limit::decision decide(bool allowed, std::int64_t remaining, double reset, double retry = 0) {
        limit::decision d;
        d.allowed = allowed;
        d.applied = &policy_;
        d.remaining = remaining;
        d.reset_seconds = reset;
        d.retry_after_seconds = retry;
        return d;
    }
    limit::policy policy_{"default", 5.0 / 60.0, 5};  // RATE_LIMIT=5
};

TEST_F(RateLimitHeaders, AllowedRequestReportsCapacityRemainingAndReset) {
    auto h = limit::make_headers(decide(true, 4, 12.0));
    EXPECT_EQ(h.limit, "5");
    EXPECT_EQ(h.remaining, "4");
    EXPECT_EQ(h.reset, "12");
    EXPECT_EQ(h.policy, "\"default\";q=5;w=60");
    EXPECT_EQ(h.rate_limit, "\"default\";r=4;t=12");
    EXPECT_TRUE(h.retry_after.empty());
}

TEST_F(RateLimitHeaders, SecondsAreRoundedUpButFloatNoiseIsNot) {
    EXPECT_EQ(limit::make_headers(decide(true, 3, 11.2)).reset, "12");
    EXPECT_EQ(limit::make_headers(decide(true, 3, 12.0000001)).reset, "12");
    EXPECT_EQ(limit::make_headers(decide(true, 5, 0)).reset, "0");
}

TEST_F(RateLimitHeaders, DeniedRequestCarriesRetryAfterEqualToReset) {
    auto h = limit::make_headers(decide(false, 0, 60.0, 11.4));
    EXPECT_EQ(h.retry_after, "12");
    EXPECT_EQ(h.reset, "12");
    EXPECT_EQ(h.remaining, "0");
    EXPECT_EQ(h.rate_limit, "\"default\";r=0;t=12");
}

TEST_F(RateLimitHeaders, RetryAfterIsAtLeastOneSecond) {
    EXPECT_EQ(limit::make_headers(decide(false, 0, 0.1, 0.05)).retry_after, "1");
    EXPECT_EQ(limit::make_headers(decide(false, 0, 0, 0)).retry_after, "1");
}

TEST_F(RateLimitHeaders, RemainingIsClampedToTheQuota) {
    EXPECT_EQ(limit::make_headers(decide(true, -3, 1)).remaining, "0");
    EXPECT_EQ(limit::make_headers(decide(true, 99, 1)).remaining, "5");
}

TEST_F(RateLimitHeaders, WindowIsTheTimeToRefillFromEmpty) {
    policy_ = {"burst", 10, 100};  // 100 capacity at 10/s
    EXPECT_EQ(limit::make_headers(decide(true, 1, 1)).policy, "\"burst\";q=100;w=10");
}

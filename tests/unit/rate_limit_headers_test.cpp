#include <gtest/gtest.h>

#include "ratelimit_proxy/limit/rate_limit_headers.hpp"

namespace limit = ratelimit_proxy::limit;

class RateLimitHeaders : public ::testing::Test {
  protected:
    limit::policy_result result(const limit::policy& p, bool allowed, std::int64_t remaining,
                                double reset, double retry = 0, double quota = 5,
                                double window = 60) {
        limit::policy_result r;
        r.source = &p;
        r.allowed = allowed;
        r.remaining = remaining;
        r.reset_seconds = reset;
        r.retry_after_seconds = retry;
        r.quota = quota;
        r.window_seconds = window;
        return r;
    }
    limit::decision decide(bool allowed, std::int64_t remaining, double reset, double retry = 0) {
        limit::decision d;
        d.allowed = allowed;
        d.results.push_back(result(default_, allowed, remaining, reset, retry));
        d.choose_tightest();
        return d;
    }
    limit::policy default_ = named("default");
    limit::policy burst_ = named("burst");
    limit::policy daily_ = named("daily");
    limit::policy shadow_ = named("experiment");

    static limit::policy named(const char* name) {
        limit::policy p;
        p.name = name;
        return p;
    }
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

TEST_F(RateLimitHeaders, TightestAllowedPolicyIsTheOneWithLeastRemaining) {
    limit::decision d;
    d.results.push_back(result(burst_, true, 15, 2, 0, 20, 2));
    d.results.push_back(result(daily_, true, 3, 40000, 0, 1000, 86400));
    d.choose_tightest();
    auto h = limit::make_headers(d);
    EXPECT_EQ(h.limit, "1000");
    EXPECT_EQ(h.remaining, "3");
    EXPECT_EQ(h.rate_limit, "\"daily\";r=3;t=40000");
    EXPECT_EQ(h.policy, "\"burst\";q=20;w=2, \"daily\";q=1000;w=86400");
}

TEST_F(RateLimitHeaders, DeniedRequestReportsTheDenialThatLastsLongest) {
    limit::decision d;
    d.allowed = false;
    d.results.push_back(result(burst_, false, 0, 2, 0.5, 20, 2));
    d.results.push_back(result(daily_, false, 0, 3600, 3600, 1000, 86400));
    d.results.push_back(result(default_, true, 0, 1, 0, 5, 60));
    d.choose_tightest();
    auto h = limit::make_headers(d);
    EXPECT_EQ(h.retry_after, "3600");
    EXPECT_EQ(h.limit, "1000");
    EXPECT_EQ(h.rate_limit, "\"daily\";r=0;t=3600");
}

TEST_F(RateLimitHeaders, ShadowPoliciesNeverShow) {
    limit::decision d;
    auto shadow = result(shadow_, false, 0, 30, 30, 1, 60);
    shadow.shadow = true;
    d.results.push_back(shadow);
    d.results.push_back(result(burst_, true, 7, 1, 0, 20, 2));
    d.choose_tightest();
    auto h = limit::make_headers(d);
    EXPECT_EQ(h.policy, "\"burst\";q=20;w=2");
    EXPECT_EQ(h.remaining, "7");
    EXPECT_TRUE(h.retry_after.empty());
}

TEST_F(RateLimitHeaders, OnlyShadowPoliciesGiveNoHeaders) {
    limit::decision d;
    auto shadow = result(shadow_, false, 0, 30, 30, 1, 60);
    shadow.shadow = true;
    d.results.push_back(shadow);
    d.choose_tightest();
    EXPECT_TRUE(limit::make_headers(d).empty());
}

TEST_F(RateLimitHeaders, HeaderLinesListEveryFieldOnceRetryAfterOnlyWhenDenied) {
    std::string lines = "kept\r\n";
    limit::make_headers(decide(true, 4, 12.0)).append_lines(lines);
    EXPECT_EQ(
        lines,
        "kept\r\nX-RateLimit-Limit: 5\r\nX-RateLimit-Remaining: 4\r\nX-RateLimit-Reset: 12\r\n"
        "RateLimit-Policy: \"default\";q=5;w=60\r\nRateLimit: \"default\";r=4;t=12\r\n");
    lines.clear();
    limit::make_headers(decide(false, 0, 60.0, 11.4)).append_lines(lines);
    EXPECT_NE(lines.find("\r\nRetry-After: 12\r\n"), std::string::npos);
    lines.clear();
    limit::rate_limit_headers{}.append_lines(lines);
    EXPECT_EQ(lines, "");
}

TEST_F(RateLimitHeaders, SetsNamesExactlyTheFieldsItsLinesCarry) {
    const auto allowed = limit::make_headers(decide(true, 4, 12.0));
    EXPECT_TRUE(allowed.sets("X-RateLimit-Limit"));
    EXPECT_TRUE(allowed.sets("RateLimit"));
    EXPECT_FALSE(allowed.sets("Retry-After"));
    EXPECT_FALSE(allowed.sets("Content-Type"));
    EXPECT_TRUE(limit::make_headers(decide(false, 0, 60.0, 11.4)).sets("Retry-After"));
}

TEST_F(RateLimitHeaders, ConcurrencyReportsSlotsAndFreeSlotsWithoutAWindow) {
    limit::policy slots = named("slots");
    slots.algo = limit::algorithm::concurrency;
    limit::decision d;
    d.allowed = false;
    d.results.push_back(result(slots, false, 0, 1, 1, 3, 0));
    d.choose_tightest();
    auto h = limit::make_headers(d);
    EXPECT_EQ(h.limit, "3");
    EXPECT_EQ(h.remaining, "0");
    EXPECT_EQ(h.retry_after, "1");
    EXPECT_EQ(h.policy, "\"slots\";q=3");
    EXPECT_EQ(h.rate_limit, "\"slots\";r=0;t=1");
}

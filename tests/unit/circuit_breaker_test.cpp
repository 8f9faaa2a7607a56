#include <gtest/gtest.h>

#include "ratelimit_proxy/redis/circuit_breaker.hpp"

using ratelimit_proxy::redis::circuit_breaker;
using namespace std::chrono_literals;

class CircuitBreaker : public ::testing::Test {
  protected:
    circuit_breaker::clock::time_point t0_ = circuit_breaker::clock::now();
    circuit_breaker breaker_{3, 1s};
};

TEST_F(CircuitBreaker, StaysClosedBelowTheThreshold) {
    breaker_.record_failure(t0_);
    breaker_.record_failure(t0_);
    EXPECT_TRUE(breaker_.allow(t0_));
    EXPECT_FALSE(breaker_.is_open());
}

TEST_F(CircuitBreaker, SuccessResetsTheFailureCount) {
    breaker_.record_failure(t0_);
    breaker_.record_failure(t0_);
    breaker_.record_success();
    breaker_.record_failure(t0_);
    breaker_.record_failure(t0_);
    EXPECT_TRUE(breaker_.allow(t0_));
}

TEST_F(CircuitBreaker, OpensAfterConsecutiveFailuresAndRefusesUntilTheProbe) {
    for (int i = 0; i < 3; ++i)
        breaker_.record_failure(t0_);
    EXPECT_TRUE(breaker_.is_open());
    EXPECT_FALSE(breaker_.allow(t0_ + 500ms));
    EXPECT_EQ(breaker_.times_opened(), 1u);
}

TEST_F(CircuitBreaker, LetsExactlyOneProbeThroughPerInterval) {
    for (int i = 0; i < 3; ++i)
        breaker_.record_failure(t0_);
    EXPECT_TRUE(breaker_.allow(t0_ + 1s));
    EXPECT_FALSE(breaker_.allow(t0_ + 1s));
    EXPECT_EQ(breaker_.current(), circuit_breaker::state::half_open);
}

TEST_F(CircuitBreaker, ALostProbeIsReplacedAfterAnotherInterval) {
    for (int i = 0; i < 3; ++i)
        breaker_.record_failure(t0_);
    ASSERT_TRUE(breaker_.allow(t0_ + 1s));
    EXPECT_FALSE(breaker_.allow(t0_ + 1500ms));
    EXPECT_TRUE(breaker_.allow(t0_ + 2s));
}

TEST_F(CircuitBreaker, FailedProbeReopensForAnotherInterval) {
    for (int i = 0; i < 3; ++i)
        breaker_.record_failure(t0_);
    ASSERT_TRUE(breaker_.allow(t0_ + 1s));
    breaker_.record_failure(t0_ + 1s);
    EXPECT_FALSE(breaker_.allow(t0_ + 1500ms));
    EXPECT_TRUE(breaker_.allow(t0_ + 2s));
}

TEST_F(CircuitBreaker, SuccessfulProbeCloses) {
    for (int i = 0; i < 3; ++i)
        breaker_.record_failure(t0_);
    ASSERT_TRUE(breaker_.allow(t0_ + 1s));
    breaker_.record_success();
    EXPECT_FALSE(breaker_.is_open());
    EXPECT_TRUE(breaker_.allow(t0_ + 1s));
}

// Liveness (/health) and readiness (/ready, which depends on Redis).
#include <gtest/gtest.h>

#include <thread>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;

namespace {

class HealthTest : public proxy_fixture<beast_upstream> {
  protected:
    void SetUp() override { start_proxy(); }

    // Polls GET path until it answers `status` or the timeout passes; returns the last status
    // (0 when no answer).
    unsigned wait_for_status(const std::string& path, unsigned status,
                             std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        unsigned last = 0;
        do {
            try {
                last = http_request(proxy->port(), boost::beast::http::verb::get, path, {}, {},
                                    std::chrono::seconds(3))
                           .status;
            } catch (const std::exception&) {
                last = 0;
            }
            if (last == status)
                return last;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        } while (std::chrono::steady_clock::now() < deadline);
        return last;
    }
};

TEST_F(HealthTest, HealthAnswers200) {
    auto r = http_get(proxy->port(), "/health");
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(upstream.request_count(), 0u);
}

TEST_F(HealthTest, ReadyAnswers200WhenRedisAnswers) {
    auto r = http_get(proxy->port(), "/ready");
    EXPECT_EQ(r.status, 200u) << r.body;
}

TEST_F(HealthTest, ReadyAnswers503WhenRedisIsDownWhileHealthStays200) {
    ASSERT_EQ(http_get(proxy->port(), "/ready").status, 200u);
    redis.kill_hard();
    EXPECT_EQ(wait_for_status("/ready", 503, std::chrono::seconds(5)), 503u);
    EXPECT_EQ(http_get(proxy->port(), "/health").status, 200u);
    EXPECT_TRUE(proxy->process().running());
}

TEST_F(HealthTest, ReadyAnswers503WhenRedisStopsAnswering) {
    ASSERT_EQ(http_get(proxy->port(), "/ready").status, 200u);
    redis.pause();  // connections stay open, nothing answers
    auto start = std::chrono::steady_clock::now();
    auto r = http_request(proxy->port(), boost::beast::http::verb::get, "/ready", {}, {},
                          std::chrono::seconds(8));
    EXPECT_EQ(r.status, 503u) << r.body;
    EXPECT_LT(elapsed_ms(start), 5000) << "the readiness check should be bounded by a timeout";
    redis.resume();
}

TEST_F(HealthTest, ReadyRecoversAfterRedisRestarts) {
    redis.kill_hard();
    ASSERT_EQ(wait_for_status("/ready", 503, std::chrono::seconds(5)), 503u);
    redis.restart();
    EXPECT_EQ(wait_for_status("/ready", 200, std::chrono::seconds(15)), 200u)
        << "the proxy should reconnect to Redis by itself";
}

}  // namespace

namespace {

// What a client sees right after start-up, before anything waited for /ready.
class StartupTest : public proxy_fixture<beast_upstream> {};

TEST_F(StartupTest, AnswersRedisBackedRequestsAsSoonAsHealthy) {
    // Redis is up before the proxy starts; once /health says 200, requests that need Redis
    // should work (wait for the connection rather than fail fast with 503).
    for (int i = 0; i < 5; ++i) {
        SCOPED_TRACE("start " + std::to_string(i));
        start_proxy({.wait_redis_ready = false});
        auto r = http_request(proxy->port(), boost::beast::http::verb::post, "/register");
        EXPECT_EQ(r.status, 201u) << r.body;
    }
}

}  // namespace

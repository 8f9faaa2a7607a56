// The per-token token bucket: headers, 429s, refill, isolation, atomicity under concurrency.
#include <gtest/gtest.h>

#include <atomic>
#include <regex>
#include <sstream>
#include <thread>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;

namespace {

class RateLimitTest : public proxy_fixture<beast_upstream> {
  protected:
    void start(env_list env) { start_proxy({.base_path = "/up", .env = std::move(env)}); }
    http_response call(const std::string& token, const std::string& path = "/api/echo") {
        return http_get(proxy->port(), path, bearer(token));
    }
};

TEST_F(RateLimitTest, CountsRemainingDownFromBurst) {
    start({{"RATE_LIMIT", "5"}});
    auto token = register_token(proxy->port());
    for (long expected = 4; expected >= 0; --expected) {
        auto r = call(token);
        ASSERT_EQ(r.status, 200u) << "request " << (5 - expected) << ": " << r.body;
        EXPECT_EQ(header_integer(r, "X-RateLimit-Limit"), 5) << r.headers_text();
        EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), expected) << r.headers_text();
    }
    EXPECT_EQ(upstream.request_count(), 5u);
}

TEST_F(RateLimitTest, RejectsWith429AfterBurstIsSpent) {
    start({{"RATE_LIMIT", "5"}});
    auto token = register_token(proxy->port());
    for (int i = 0; i < 5; ++i)
        ASSERT_EQ(call(token).status, 200u) << "request " << i;
    for (int i = 0; i < 3; ++i) {
        auto r = call(token);
        EXPECT_EQ(r.status, 429u) << r.body;
        EXPECT_TRUE(r.header("Content-Type").rfind("application/json", 0) == 0)
            << r.header("Content-Type");
        EXPECT_NO_THROW(r.json()) << r.body;
        auto retry = header_integer(r, "Retry-After");
        ASSERT_TRUE(retry.has_value()) << r.headers_text();
        EXPECT_GE(*retry, 1);
        EXPECT_EQ(header_integer(r, "X-RateLimit-Limit"), 5) << r.headers_text();
        EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), 0) << r.headers_text();
        EXPECT_TRUE(header_integer(r, "X-RateLimit-Reset").has_value()) << r.headers_text();
        EXPECT_TRUE(r.has_header("RateLimit-Policy")) << r.headers_text();
        EXPECT_TRUE(r.has_header("RateLimit")) << r.headers_text();
    }
    // Rejected requests never reach the upstream.
    EXPECT_EQ(upstream.request_count(), 5u);
}

TEST_F(RateLimitTest, RetryAfterPointsAtTheNextFreeToken) {
    // 5 per minute: one token every 12 s. Coming back earlier than that cannot succeed, and a
    // client never needs to wait longer than the time until the bucket is full (60 s).
    start({{"RATE_LIMIT", "5"}});
    auto token = register_token(proxy->port());
    for (int i = 0; i < 5; ++i)
        ASSERT_EQ(call(token).status, 200u);
    auto r = call(token);
    ASSERT_EQ(r.status, 429u);
    auto retry = header_integer(r, "Retry-After");
    ASSERT_TRUE(retry.has_value()) << r.headers_text();
    EXPECT_GE(*retry, 10);
    EXPECT_LE(*retry, 60);
}

TEST_F(RateLimitTest, SendsResetAsDeltaSecondsUntilFull) {
    start({{"RATE_LIMIT", "5"}});  // refill: 1 token per 12 s
    auto token = register_token(proxy->port());
    auto first = call(token);
    ASSERT_EQ(first.status, 200u);
    auto reset = header_integer(first, "X-RateLimit-Reset");
    ASSERT_TRUE(reset.has_value()) << first.headers_text();
    EXPECT_GE(*reset, 11);  // one token missing: 12 s (minus what passed since)
    EXPECT_LE(*reset, 12);
    http_response last;
    for (int i = 0; i < 4; ++i)
        last = call(token);
    ASSERT_EQ(last.status, 200u);
    reset = header_integer(last, "X-RateLimit-Reset");
    ASSERT_TRUE(reset.has_value()) << last.headers_text();
    EXPECT_GE(*reset, 58);  // empty bucket: 60 s until full
    EXPECT_LE(*reset, 60);
}

TEST_F(RateLimitTest, SendsIetfRateLimitHeadersMatchingTheLegacyOnes) {
    start({{"RATE_LIMIT", "5"}});
    auto token = register_token(proxy->port());
    for (int i = 0; i < 6; ++i) {
        auto r = call(token);
        SCOPED_TRACE("request " + std::to_string(i) + " status " + std::to_string(r.status));
        EXPECT_EQ(r.header("RateLimit-Policy"), R"("default";q=5;w=60)") << r.headers_text();
        std::smatch m;
        std::string rl = r.header("RateLimit");
        ASSERT_TRUE(std::regex_match(rl, m, std::regex(R"re("default";r=(\d+);t=(\d+))re")))
            << "RateLimit: " << rl;
        EXPECT_EQ(std::stol(m[1]), header_integer(r, "X-RateLimit-Remaining").value_or(-1));
        EXPECT_EQ(std::stol(m[2]), header_integer(r, "X-RateLimit-Reset").value_or(-1));
    }
}

TEST_F(RateLimitTest, BurstSetsTheCapacity) {
    start({{"RATE_LIMIT", "60"}, {"BURST", "3"}});
    auto token = register_token(proxy->port());
    for (long expected = 2; expected >= 0; --expected) {
        auto r = call(token);
        ASSERT_EQ(r.status, 200u);
        EXPECT_EQ(header_integer(r, "X-RateLimit-Limit"), 3) << r.headers_text();
        EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), expected) << r.headers_text();
        std::string policy = r.header("RateLimit-Policy");
        EXPECT_TRUE(std::regex_match(policy, std::regex(R"re("default";q=3;w=\d+)re")))
            << "RateLimit-Policy: " << policy;
    }
    EXPECT_EQ(call(token).status, 429u);
    EXPECT_EQ(upstream.request_count(), 3u);
}

TEST_F(RateLimitTest, DefaultsToSixtyPerMinute) {
    start({});
    auto token = register_token(proxy->port());
    auto r = call(token);
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(header_integer(r, "X-RateLimit-Limit"), 60) << r.headers_text();
    EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), 59) << r.headers_text();
}

TEST_F(RateLimitTest, RefillsTokensOverTime) {
    // 120 per minute = one token every 500 ms; capacity 2.
    start({{"RATE_LIMIT", "120"}, {"BURST", "2"}});
    auto token = register_token(proxy->port());
    std::size_t ok = 0;
    auto count = [&](const http_response& r) {
        ok += r.status == 200u ? 1 : 0;
        return r;
    };
    ASSERT_EQ(count(call(token)).status, 200u);
    ASSERT_EQ(count(call(token)).status, 200u);
    auto emptied = std::chrono::steady_clock::now();
    auto rejected = count(call(token));
    if (elapsed_ms(emptied) < 450) {
        EXPECT_EQ(rejected.status, 429u) << "the bucket should be empty";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(650));
    auto refilled = count(call(token));
    auto since_empty = elapsed_ms(emptied);
    EXPECT_EQ(refilled.status, 200u) << "one token should have come back after 650 ms";
    if (since_empty < 950) {
        EXPECT_EQ(header_integer(refilled, "X-RateLimit-Remaining"), 0) << refilled.headers_text();
        auto again = count(call(token));
        if (elapsed_ms(emptied) < 950) {
            EXPECT_EQ(again.status, 429u) << "only one token should have come back";
        }
    }
    EXPECT_EQ(upstream.request_count(), ok);
}

TEST_F(RateLimitTest, KeepsTokensIsolated) {
    start({{"RATE_LIMIT", "3"}});
    auto a = register_token(proxy->port());
    auto b = register_token(proxy->port());
    for (int i = 0; i < 3; ++i)
        ASSERT_EQ(call(a).status, 200u);
    ASSERT_EQ(call(a).status, 429u);
    auto r = call(b);
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), 2) << r.headers_text();
    EXPECT_EQ(call(a).status, 429u);
}

TEST_F(RateLimitTest, KeepsTheConnectionUsableAfter429) {
    start({{"RATE_LIMIT", "2"}});
    auto token = register_token(proxy->port());
    auto other = register_token(proxy->port());
    http_connection c(proxy->port());
    for (int i = 0; i < 2; ++i)
        ASSERT_EQ(c.request(boost::beast::http::verb::get, "/api/echo", bearer(token)).status,
                  200u);
    auto limited = c.request(boost::beast::http::verb::get, "/api/echo", bearer(token));
    ASSERT_EQ(limited.status, 429u);
    ASSERT_TRUE(limited.keep_alive);
    auto r = c.request(boost::beast::http::verb::get, "/api/echo", bearer(other));
    EXPECT_EQ(r.status, 200u) << r.body;
}

TEST_F(RateLimitTest, RateLimitHeadersAccompanyUpstreamErrors) {
    // Every /api response that got past authentication carries the limit headers, whatever
    // the upstream answered.
    start({{"RATE_LIMIT", "5"}});
    auto token = register_token(proxy->port());
    auto r = call(token, "/api/status?code=503");
    EXPECT_EQ(r.status, 503u) << r.body;
    EXPECT_EQ(header_integer(r, "X-RateLimit-Limit"), 5) << r.headers_text();
    EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), 4) << r.headers_text();
}

TEST_F(RateLimitTest, SurvivesRedisScriptCacheFlush) {
    // Redis forgets loaded scripts on restart or failover (NOSCRIPT): the proxy reloads.
    start({{"RATE_LIMIT", "5"}});
    auto token = register_token(proxy->port());
    ASSERT_EQ(call(token).status, 200u);
    ASSERT_EQ(redis.command({"SCRIPT", "FLUSH"}), "OK");
    auto r = call(token);
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), 3) << r.headers_text();
}

TEST_F(RateLimitTest, ExpiresIdleBucketState) {
    // Whatever the limiter writes for a token must expire, or Redis grows with every client
    // that ever called once. 60/min with burst 60: full again after at most 60 s.
    start({});
    auto token = register_token(proxy->port());
    std::string before = redis.command({"KEYS", "*"});
    ASSERT_EQ(call(token).status, 200u);
    std::string after = redis.command({"KEYS", "*"});
    std::vector<std::string> new_keys;
    std::istringstream ss(after);
    for (std::string k; std::getline(ss, k);)
        if (!k.empty() && ("\n" + before + "\n").find("\n" + k + "\n") == std::string::npos)
            new_keys.push_back(k);
    ASSERT_FALSE(new_keys.empty()) << "the limiter stored nothing in Redis?";
    for (auto& k : new_keys) {
        long ttl = std::stol(redis.command({"PTTL", k}));
        EXPECT_GT(ttl, 0) << k << " never expires";
        EXPECT_LE(ttl, 24L * 3600 * 1000) << k;
    }
}

TEST_F(RateLimitTest, AllowsExactlyBurstUnderConcurrency) {
    // 60 per minute, capacity 20: refill is one token per second.
    start({{"RATE_LIMIT", "60"}, {"BURST", "20"}});
    auto token = register_token(proxy->port());
    std::atomic<int> allowed{0}, rejected{0}, other{0};
    std::vector<std::thread> threads;
    auto start_time = std::chrono::steady_clock::now();
    for (int t = 0; t < 6; ++t) {
        threads.emplace_back([&] {
            std::unique_ptr<http_connection> c;
            for (int i = 0; i < 10; ++i) {
                count_echo(c, proxy->port(), token, allowed, rejected, other);
            }
        });
    }
    for (auto& t : threads)
        t.join();
    auto seconds = elapsed_ms(start_time) / 1000.0;
    EXPECT_EQ(other.load(), 0);
    EXPECT_EQ(allowed + rejected, 60);
    EXPECT_GE(allowed.load(), 20);
    EXPECT_LE(allowed.load(), 20 + static_cast<int>(seconds)) << "elapsed " << seconds << " s";
    EXPECT_EQ(upstream.request_count(), static_cast<std::size_t>(allowed.load()));
}

}  // namespace

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <random>

#include "ratelimit_proxy/limit/lua_scripts.hpp"
#include "ratelimit_proxy/limit/memory_limiter.hpp"
#include "ratelimit_proxy/limit/redis_limiter.hpp"
#include "ratelimit_proxy/redis/connection.hpp"
#include "redis_server.hpp"

namespace limit = ratelimit_proxy::limit;
namespace redis = ratelimit_proxy::redis;

// The Lua script and the in-memory twin are fed the same request sequence on the same
// (virtual) clock and must reach the same decisions.
class TokenBucketEquivalence : public ::testing::Test {
  protected:
    void SetUp() override {
        redis::connection_options o;
        o.where.port = server_.port();
        o.command_timeout = std::chrono::seconds(2);
        conn_ = std::make_unique<redis::connection>(io_, o);
        conn_->start();
        for (int i = 0; i < 200 && !conn_->connected(); ++i)
            io_.run_for(std::chrono::milliseconds(10));
        ASSERT_TRUE(conn_->connected());
    }

    limit::decision run_lua(const limit::policy& p, const std::string& key, std::uint32_t cost,
                            std::int64_t now_us) {
        const std::string rate = std::to_string(p.rate_per_second);
        const std::string capacity = std::to_string(p.capacity);
        const std::string cost_s = std::to_string(cost);
        const std::string now_s = std::to_string(now_us);
        const std::string_view keys[] = {key};
        const std::string_view args[] = {rate, capacity, cost_s, now_s};
        bool done = false;
        limit::decision d;
        script_.run(*conn_, keys, args, [&](redis::outcome o, redis::reply&& r) {
            EXPECT_EQ(o, redis::outcome::ok);
            EXPECT_TRUE(limit::redis_limiter::parse_reply(r, p, d)) << r.str;
            done = true;
        });
        for (int i = 0; i < 500 && !done; ++i)
            io_.run_for(std::chrono::milliseconds(10));
        EXPECT_TRUE(done);
        return d;
    }

    rlp_test::redis_server server_;
    boost::asio::io_context io_;
    std::unique_ptr<redis::connection> conn_;
    redis::script script_{ratelimit_proxy::lua::token_bucket};
};

TEST_F(TokenBucketEquivalence, RandomSequenceGivesTheSameDecisions) {
    limit::policy p{"default", 2.5, 7};
    std::int64_t now = 1'700'000'000'000'000;
    limit::memory_limiter twin(p, [&] { return now; });
    const std::string key = "rlp:test:{" + rlp_test::random_hex(8) + "}";
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> gap_ms(0, 900);
    std::uniform_int_distribution<int> cost(1, 3);
    int allowed = 0, denied = 0;
    for (int i = 0; i < 300; ++i) {
        now += gap_ms(rng) * 1000;
        const auto c = static_cast<std::uint32_t>(cost(rng));
        auto lua = run_lua(p, key, c, now);
        auto mem = twin.check_now("k", c);
        ASSERT_EQ(lua.allowed, mem.allowed) << "step " << i;
        ASSERT_EQ(lua.remaining, mem.remaining) << "step " << i;
        ASSERT_NEAR(lua.reset_seconds, mem.reset_seconds, 1e-3) << "step " << i;
        ASSERT_NEAR(lua.retry_after_seconds, mem.retry_after_seconds, 1e-3) << "step " << i;
        (lua.allowed ? allowed : denied)++;
    }
    // The sequence must exercise both outcomes or it proves nothing.
    EXPECT_GT(allowed, 50);
    EXPECT_GT(denied, 50);
}

TEST_F(TokenBucketEquivalence, BucketKeyExpiresOnceItWouldBeFull) {
    limit::policy p{"default", 10, 5};
    const std::string key = "rlp:test:{" + rlp_test::random_hex(8) + "}";
    run_lua(p, key, 1, 1'700'000'000'000'000);
    const auto ttl = std::stoll(server_.command({"PTTL", key}));
    // One token short refills in 100 ms; the script adds a second of slack.
    EXPECT_GT(ttl, 0);
    EXPECT_LE(ttl, 1100);
}

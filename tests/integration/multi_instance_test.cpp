// Several proxy instances sharing one Redis share tokens and buckets.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;

namespace {

class MultiInstanceTest : public proxy_fixture<beast_upstream> {
  protected:
    env_list limits{{"RATE_LIMIT", "60"}, {"BURST", "50"}};  // refill: 1 token per second
    proxy_process a{proxy_options_for({.env = limits})};
    proxy_process b{proxy_options_for({.env = limits})};
};

TEST_F(MultiInstanceTest, TokenRegisteredOnOneInstanceWorksOnTheOther) {
    auto token = register_token(a.port());
    auto r = http_get(b.port(), "/api/echo", bearer(token));
    EXPECT_EQ(r.status, 200u) << r.body;
    auto token2 = register_token(b.port());
    EXPECT_EQ(http_get(a.port(), "/api/echo", bearer(token2)).status, 200u);
}

TEST_F(MultiInstanceTest, InstancesContinueOneBucket) {
    auto token = register_token(a.port());
    auto r1 = http_get(a.port(), "/api/echo", bearer(token));
    auto r2 = http_get(b.port(), "/api/echo", bearer(token));
    ASSERT_EQ(r1.status, 200u);
    ASSERT_EQ(r2.status, 200u);
    EXPECT_EQ(header_integer(r1, "X-RateLimit-Remaining"), 49) << r1.headers_text();
    // At most one second passed: at most one token came back.
    auto rem2 = header_integer(r2, "X-RateLimit-Remaining");
    ASSERT_TRUE(rem2.has_value()) << r2.headers_text();
    EXPECT_EQ(*rem2, 48) << r2.headers_text();
}

TEST_F(MultiInstanceTest, TwoInstancesShareOneBucketExactlyUnderConcurrency) {
    auto token = register_token(a.port());
    // Warm both instances' connections to Redis and their token caches with a token of its
    // own, so the burst below measures only the shared bucket.
    auto warm = register_token(b.port());
    ASSERT_EQ(http_get(a.port(), "/api/echo", bearer(warm)).status, 200u);
    ASSERT_EQ(http_get(b.port(), "/api/echo", bearer(warm)).status, 200u);
    const std::size_t upstream_before = upstream.request_count();

    constexpr int threads_per_instance = 10;
    constexpr int requests_per_thread = 10;  // 200 requests in all
    std::atomic<int> allowed{0}, rejected{0}, other{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2 * threads_per_instance; ++t) {
        std::uint16_t port = (t % 2 == 0) ? a.port() : b.port();
        threads.emplace_back([&, port] {
            std::unique_ptr<http_connection> c;
            try {
                c = std::make_unique<http_connection>(port);
            } catch (const std::exception&) {
            }
            while (!go)
                std::this_thread::yield();
            for (int i = 0; i < requests_per_thread; ++i) {
                count_echo(c, port, token, allowed, rejected, other);
            }
        });
    }
    auto start = std::chrono::steady_clock::now();
    go = true;
    for (auto& t : threads)
        t.join();
    double seconds = elapsed_ms(start) / 1000.0;

    EXPECT_EQ(other.load(), 0);
    EXPECT_EQ(allowed + rejected, 200);
    // 50 in the bucket, plus at most one per second that passed during the burst.
    EXPECT_GE(allowed.load(), 50);
    EXPECT_LE(allowed.load(), 50 + static_cast<int>(seconds)) << "burst took " << seconds << " s";
    EXPECT_EQ(upstream.request_count() - upstream_before, static_cast<std::size_t>(allowed.load()));
}

}  // namespace

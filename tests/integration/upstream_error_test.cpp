// Local answers when the upstream fails: 502 when it cannot be reached, 504 when it is slow.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;

namespace {

class UpstreamErrorTest : public proxy_fixture<beast_upstream> {
  protected:
    const std::string api_key = "sk-err-" + random_hex(12);

    void expect_local_error(const http_response& r, unsigned status) {
        EXPECT_EQ(r.status, status) << r.body;
        EXPECT_TRUE(r.header("Content-Type").rfind("application/json", 0) == 0) << r.headers_text();
        EXPECT_NO_THROW(r.json()) << r.body;
        EXPECT_FALSE(contains(r.body, api_key)) << r.body;
        EXPECT_FALSE(contains(r.headers_text(), api_key)) << r.headers_text();
        // The request passed authentication and the limiter: like every /api response, it
        // says where the client stands.
        EXPECT_TRUE(header_integer(r, "X-RateLimit-Limit").has_value()) << r.headers_text();
        EXPECT_TRUE(header_integer(r, "X-RateLimit-Remaining").has_value()) << r.headers_text();
    }
};

TEST_F(UpstreamErrorTest, AnswersWith502WhenNothingListensUpstream) {
    start_proxy({.target_url = "http://127.0.0.1:" + std::to_string(free_port()) + "/v1",
                 .env = {{"TARGET_API_KEY", api_key}}});
    auto token = register_token(proxy->port());
    auto start = std::chrono::steady_clock::now();
    auto r = http_get(proxy->port(), "/api/echo", bearer(token));
    expect_local_error(r, 502);
    EXPECT_LT(elapsed_ms(start), 3000);
    EXPECT_EQ(http_get(proxy->port(), "/health").status, 200u);
    EXPECT_FALSE(contains(proxy->log(), api_key));
}

TEST_F(UpstreamErrorTest, AnswersWith504WhenUpstreamNeverAnswers) {
    start_proxy({.base_path = "/v1",
                 .env = {{"TARGET_API_KEY", api_key}},
                 .config = R"({"upstream":{"response_timeout_ms":500}})"});
    auto token = register_token(proxy->port());
    auto start = std::chrono::steady_clock::now();
    auto r = http_get(proxy->port(), "/api/never", bearer(token));
    auto ms = elapsed_ms(start);
    expect_local_error(r, 504);
    EXPECT_GE(ms, 400);
    EXPECT_LT(ms, 2500) << "response_timeout_ms=500 should bound the wait";
    EXPECT_EQ(upstream.request_count(), 1u);
    // The proxy goes on serving, and answers normally once the upstream does.
    EXPECT_EQ(http_get(proxy->port(), "/api/echo", bearer(token)).status, 200u);
}

TEST_F(UpstreamErrorTest, SlowButTimelyUpstreamIsNotCutOff) {
    start_proxy({.base_path = "/v1", .config = R"({"upstream":{"response_timeout_ms":1500}})"});
    auto token = register_token(proxy->port());
    auto r = http_get(proxy->port(), "/api/slow?ms=700", bearer(token));
    EXPECT_EQ(r.status, 200u) << r.body;
}

TEST_F(UpstreamErrorTest, AnswersWith502WhenUpstreamGoesAway) {
    auto gone = std::make_unique<beast_upstream>();
    start_proxy({.target_url = gone->url()});
    auto token = register_token(proxy->port());
    ASSERT_EQ(http_get(proxy->port(), "/api/echo", bearer(token)).status, 200u);
    gone.reset();  // closes the pooled connection and the listener
    auto r = http_get(proxy->port(), "/api/echo", bearer(token));
    expect_local_error(r, 502);
    EXPECT_TRUE(proxy->process().running());
}

TEST_F(UpstreamErrorTest, ServesSlowRequestsConcurrently) {
    // 20 requests that each wait 600 ms upstream, on 2 worker threads: they overlap.
    start_proxy({.base_path = "/v1"});
    auto token = register_token(proxy->port());
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i)
        threads.emplace_back([&] {
            try {
                if (http_get(proxy->port(), "/api/slow?ms=600", bearer(token)).status == 200u)
                    ++ok;
            } catch (const std::exception&) {
            }
        });
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(ok.load(), 20);
    EXPECT_LT(elapsed_ms(start), 3000) << "slow upstream requests are handled one after another";
}

}  // namespace

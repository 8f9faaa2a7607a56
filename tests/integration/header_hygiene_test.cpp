// Header rewriting with exact control over both legs (in-process upstream that records).
#include <gtest/gtest.h>

#include <cctype>
#include <thread>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
namespace http = boost::beast::http;

namespace {

class HeaderHygieneTest : public proxy_fixture<beast_upstream> {
  protected:
    const std::string api_key = "sk-live-" + random_hex(20);

    void start(env_list env = {}) {
        start_proxy({.base_path = "/base", .env = std::move(env), .register_token = true});
    }
    recorded_request only_request() {
        EXPECT_TRUE(upstream.wait_for_requests(1, std::chrono::seconds(5)));
        auto reqs = upstream.requests();
        EXPECT_EQ(reqs.size(), 1u);
        return reqs.empty() ? recorded_request{} : reqs.back();
    }
};

TEST_F(HeaderHygieneTest, StripsHopByHopRequestHeaders) {
    start();
    std::string req =
        "GET /api/echo?x=1 HTTP/1.1\r\n"
        "Host: 127.0.0.1:" +
        std::to_string(proxy->port()) +
        "\r\n"
        "Authorization: Bearer " +
        token +
        "\r\n"
        "Connection: keep-alive, X-Secret-Hop\r\n"
        "X-Secret-Hop: 1\r\n"
        "Keep-Alive: timeout=5\r\n"
        "Proxy-Authorization: x\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "TE: trailers\r\n"
        "X-End-To-End: kept\r\n"
        "\r\n";
    auto r = raw_request(proxy->port(), req);
    ASSERT_EQ(r.status, 200u) << r.body;
    auto rec = only_request();
    SCOPED_TRACE("upstream saw:\n" + rec.raw_headers());
    EXPECT_FALSE(rec.has_header("X-Secret-Hop"));
    EXPECT_FALSE(rec.has_header("Keep-Alive"));
    EXPECT_FALSE(rec.has_header("Proxy-Authorization"));
    EXPECT_FALSE(rec.has_header("Proxy-Connection"));
    EXPECT_FALSE(rec.has_header("TE"));
    EXPECT_FALSE(contains(rec.raw_headers(), "X-Secret-Hop"));
    EXPECT_FALSE(contains(rec.raw_headers(), "x-secret-hop"));
    EXPECT_EQ(rec.header("X-End-To-End"), "kept");
    EXPECT_EQ(rec.target, "/base/echo?x=1");
    EXPECT_EQ(rec.method, "GET");
}

TEST_F(HeaderHygieneTest, StripsHopByHopResponseHeadersAndPassesTheRest) {
    start();
    auto r = http_get(proxy->port(), "/api/hop", bearer(token));
    ASSERT_EQ(r.status, 200u) << r.body;
    SCOPED_TRACE("client saw:\n" + r.headers_text());
    EXPECT_FALSE(r.has_header("X-Up-Hop"));
    EXPECT_FALSE(r.has_header("Keep-Alive"));
    EXPECT_FALSE(r.has_header("Proxy-Authenticate"));
    EXPECT_FALSE(r.has_header("Proxy-Connection"));
    EXPECT_FALSE(contains(r.headers_text(), "X-Up-Hop"));
    EXPECT_EQ(r.header("x-ratelimit-limit-requests"), "100");
    EXPECT_EQ(r.header("x-ratelimit-remaining-requests"), "99");
    EXPECT_EQ(r.header("X-End-To-End"), "yes");
    EXPECT_EQ(r.body, R"({"hop":true})");
}

TEST_F(HeaderHygieneTest, ProxyLimitHeadersReplaceTheUpstreamsButItsRetryAfterStays) {
    start({{"RATE_LIMIT", "50"}, {"BURST", "50"}});
    auto r = http_get(proxy->port(), "/api/hop", bearer(token));
    ASSERT_EQ(r.status, 200u) << r.body;
    SCOPED_TRACE("client saw:\n" + r.headers_text());
    // One X-RateLimit-Limit, the proxy's; an allowed answer has no Retry-After of its own,
    // so the upstream's reaches the client.
    std::string lower = r.headers_text();
    for (auto& c : lower)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::size_t count = 0;
    for (auto at = lower.find("x-ratelimit-limit:"); at != std::string::npos;
         at = lower.find("x-ratelimit-limit:", at + 1))
        ++count;
    EXPECT_EQ(count, 1u);
    EXPECT_EQ(r.header("X-RateLimit-Limit"), "50");
    EXPECT_EQ(r.header("Retry-After"), "30");
    EXPECT_EQ(r.header("x-ratelimit-limit-requests"), "100");
}

TEST_F(HeaderHygieneTest, DoesNotForwardTheClientsAuthorization) {
    start();
    auto r = http_get(proxy->port(), "/api/echo", bearer(token));
    ASSERT_EQ(r.status, 200u) << r.body;
    auto rec = only_request();
    EXPECT_FALSE(rec.has_header("Authorization")) << rec.raw_headers();
    EXPECT_FALSE(contains(rec.raw_headers(), token));
    EXPECT_FALSE(contains(rec.target, token));
}

TEST_F(HeaderHygieneTest, InjectsKeyAsBearerByDefault) {
    start({{"TARGET_API_KEY", api_key}});
    auto r = http_get(proxy->port(), "/api/echo", bearer(token));
    ASSERT_EQ(r.status, 200u);
    auto rec = only_request();
    EXPECT_EQ(rec.header("Authorization"), "Bearer " + api_key) << rec.raw_headers();
    std::size_t auth_headers = 0;
    for (auto& [k, v] : rec.headers)
        auth_headers += boost::beast::iequals(k, "Authorization");
    EXPECT_EQ(auth_headers, 1u) << rec.raw_headers();
    EXPECT_FALSE(contains(rec.raw_headers(), token));
}

TEST_F(HeaderHygieneTest, ReplacesClientSuppliedKeyHeader) {
    start({{"TARGET_API_KEY", api_key},
           {"TARGET_API_KEY_HEADER", "x-api-key"},
           {"TARGET_API_KEY_FORMAT", "{key}"}});
    auto r = http_get(proxy->port(), "/api/echo",
                      bearer(token, {{"X-Api-Key", "forged"}, {"x-api-key", "forged-too"}}));
    ASSERT_EQ(r.status, 200u);
    auto rec = only_request();
    std::size_t n = 0;
    for (auto& [k, v] : rec.headers)
        n += boost::beast::iequals(k, "x-api-key");
    EXPECT_EQ(n, 1u) << rec.raw_headers();
    EXPECT_EQ(rec.header("x-api-key"), api_key) << rec.raw_headers();
    EXPECT_FALSE(contains(rec.raw_headers(), "forged"));
    EXPECT_FALSE(rec.has_header("Authorization")) << rec.raw_headers();
}

TEST_F(HeaderHygieneTest, SetsUpstreamHostAndForwardingHeaders) {
    start();
    auto r = http_get(proxy->port(), "/api/echo", bearer(token, {{"Host", "client.example"}}));
    ASSERT_EQ(r.status, 200u) << r.body;
    auto rec = only_request();
    SCOPED_TRACE(rec.raw_headers());
    EXPECT_EQ(rec.header("Host"), "127.0.0.1:" + std::to_string(upstream.port()));
    EXPECT_TRUE(contains(rec.header("X-Forwarded-For"), "127.0.0.1"));
    EXPECT_EQ(rec.header("X-Forwarded-Proto"), "http");
}

TEST_F(HeaderHygieneTest, PreservesRequestBodyAndContentType) {
    start();
    const std::string body = "name=value&other=" + random_hex(100);
    auto r =
        http_request(proxy->port(), http::verb::post, "/api/echo",
                     bearer(token, {{"Content-Type", "application/x-www-form-urlencoded"}}), body);
    ASSERT_EQ(r.status, 200u) << r.body;
    auto rec = only_request();
    EXPECT_EQ(rec.method, "POST");
    EXPECT_EQ(rec.body_prefix, body);
    EXPECT_EQ(rec.header("Content-Type"), "application/x-www-form-urlencoded");
}

TEST_F(HeaderHygieneTest, ClosesClientConnectionWhenAsked) {
    start();
    http_connection c(proxy->port());
    auto r = c.request(http::verb::get, "/api/echo", bearer(token, {{"Connection", "close"}}));
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_FALSE(r.keep_alive);
    EXPECT_TRUE(c.wait_for_close(std::chrono::seconds(3)));
}

TEST_F(HeaderHygieneTest, AnswersPipelinedRequestsInOrder) {
    start();
    http_connection c(proxy->port());
    std::string one =
        "GET /api/echo?n=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n";
    std::string two = "POST /api/echo?n=2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                      "\r\nContent-Length: 3\r\n\r\nabc";
    c.send_raw(one + two);
    auto r1 = c.read_response();
    auto r2 = c.read_response();
    ASSERT_EQ(r1.status, 200u) << r1.body;
    ASSERT_EQ(r2.status, 200u) << r2.body;
    EXPECT_EQ(r1.json()["target"], "/base/echo?n=1");
    EXPECT_EQ(r2.json()["target"], "/base/echo?n=2");
    EXPECT_EQ(r2.json()["body_bytes"], 3);
}

TEST_F(HeaderHygieneTest, HonoursExpectContinueUploads) {
    // curl sends "Expect: 100-continue" for bodies over 1 MiB and waits up to 1 s for the
    // interim answer before sending the body anyway.
    start();
    http_connection c(proxy->port(), std::chrono::seconds(5));
    const std::string body(100000, 'e');
    auto t0 = std::chrono::steady_clock::now();
    c.send_raw("POST /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
               "\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\nExpect: 100-continue\r\n\r\n");
    c.set_timeout(std::chrono::milliseconds(900));
    http_response interim;
    try {
        interim = c.read_response();
    } catch (const std::exception& e) {
        FAIL() << "no interim response within 900 ms: " << e.what();
    }
    EXPECT_EQ(interim.status, 100u);
    EXPECT_LT(elapsed_ms(t0), 900);
    c.set_timeout(std::chrono::seconds(5));
    c.send_raw(body);
    auto r = c.read_response();
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.json()["body_bytes"], body.size());
}

TEST_F(HeaderHygieneTest, RejectsOverLimitUploadBeforeItsBody) {
    start({{"RATE_LIMIT", "1"}});
    ASSERT_EQ(http_get(proxy->port(), "/api/echo", bearer(token)).status, 200u);
    http_connection c(proxy->port(), std::chrono::seconds(3));
    c.send_raw("POST /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
               "\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n\r\n");
    auto r = c.read_response();
    EXPECT_EQ(r.status, 429u) << "the client should not have to send 10 MB to learn it is limited";
    EXPECT_EQ(upstream.request_count(), 1u);
}

// The upstream key appears in no response to the client and in no log line.
class KeySecrecyTest : public HeaderHygieneTest {
  protected:
    std::vector<http_response> exercise() {
        std::vector<http_response> out;
        out.push_back(http_request(proxy->port(), http::verb::post, "/register"));
        out.push_back(http_get(proxy->port(), "/api/status?code=200", bearer(token)));
        out.push_back(http_get(proxy->port(), "/api/hop", bearer(token)));
        out.push_back(http_get(proxy->port(), "/api/status?code=500", bearer(token)));
        out.push_back(http_get(proxy->port(), "/api/echo"));  // 401
        out.push_back(http_get(proxy->port(), "/api/echo", bearer("rlp_nope")));
        for (int i = 0; i < 3; ++i)
            out.push_back(http_get(proxy->port(), "/api/status?code=200", bearer(token)));  // 429s
        out.push_back(http_get(proxy->port(), "/health"));
        out.push_back(http_get(proxy->port(), "/ready"));
        return out;
    }
    void check(const std::vector<http_response>& responses) {
        bool saw_429 = false, saw_echo = false;
        for (auto& r : responses) {
            saw_429 |= r.status == 429u;
            EXPECT_FALSE(contains(r.body, api_key)) << r.status << " body: " << r.body;
            EXPECT_FALSE(contains(r.headers_text(), api_key)) << r.headers_text();
        }
        // The upstream did get the key (so the absence above means something).
        for (auto& rec : upstream.requests())
            saw_echo |= contains(rec.raw_headers(), api_key);
        EXPECT_TRUE(saw_429);
        EXPECT_TRUE(saw_echo);
        std::string log = proxy->log();
        EXPECT_FALSE(log.empty()) << "the proxy should log access lines";
        EXPECT_FALSE(contains(log, api_key)) << log;
        EXPECT_FALSE(contains(log, api_key.substr(8, 16))) << log;  // not even a part
        EXPECT_FALSE(contains(log, token)) << "the client's token is a secret too:\n" << log;
    }
};

TEST_F(KeySecrecyTest, KeepsUpstreamKeyOutOfResponsesAndLogs) {
    start({{"TARGET_API_KEY", api_key}, {"RATE_LIMIT", "4"}});
    check(exercise());
}

TEST_F(KeySecrecyTest, KeepsUpstreamKeyOutOfTraceLogs) {
    start({{"TARGET_API_KEY", api_key}, {"RATE_LIMIT", "4"}, {"LOG_LEVEL", "trace"}});
    check(exercise());
}

TEST_F(KeySecrecyTest, LogsOneAccessLinePerRequest) {
    start({{"TARGET_API_KEY", api_key}});
    const std::string marker = "/api/marker-" + random_hex(6);
    for (int i = 0; i < 3; ++i)
        ASSERT_EQ(http_get(proxy->port(), marker, bearer(token)).status, 200u);
    // Logs may be flushed asynchronously; give them a moment.
    std::size_t lines = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    do {
        std::string log = proxy->log();
        lines = 0;
        for (std::size_t pos = 0; (pos = log.find(marker, pos)) != std::string::npos; ++pos)
            ++lines;
        if (lines >= 3)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(lines, 3u) << proxy->log();
}

}  // namespace

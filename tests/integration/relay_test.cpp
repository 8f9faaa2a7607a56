// Relaying to a real upstream nobody here wrote: Debian's httpbin under gunicorn.
#include <gtest/gtest.h>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
namespace http = boost::beast::http;

namespace {

class RelayTest : public proxy_fixture<httpbin_server> {
  protected:
    const std::string api_key = "sk-test-" + random_hex(16);

    void start(const std::string& base_path, env_list env = {}) {
        start_proxy({.base_path = base_path, .env = std::move(env), .register_token = true});
    }
    http_response call(http::verb method, const std::string& target, header_list headers = {},
                       const std::string& body = {}) {
        return http_request(proxy->port(), method, target, bearer(token, std::move(headers)), body);
    }
    // Direct request to httpbin, bypassing the proxy.
    http_response direct(const std::string& target) { return http_get(upstream.port(), target); }
};

TEST_F(RelayTest, ForwardsMethodPathAndQueryUnderTheBasePath) {
    start("/anything/base");
    auto r = call(http::verb::get, "/api/x/y?a=1&b=two");
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json();
    EXPECT_EQ(j["method"], "GET");
    std::string url = j["url"];
    const std::string suffix = "/anything/base/x/y?a=1&b=two";
    ASSERT_GE(url.size(), suffix.size());
    EXPECT_EQ(url.substr(url.size() - suffix.size()), suffix) << url;
    EXPECT_EQ(j["args"]["a"], "1");
    EXPECT_EQ(j["args"]["b"], "two");
}

TEST_F(RelayTest, PreservesPercentEncodedQuery) {
    start("/anything");
    auto r = call(http::verb::get, "/api/q?text=a%20b%26c&slash=%2F");
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json();
    EXPECT_EQ(j["args"]["text"], "a b&c") << r.body;
    EXPECT_EQ(j["args"]["slash"], "/") << r.body;
}

TEST_F(RelayTest, ForwardsEachMethodWithItsBody) {
    start("/anything");
    const std::string body = R"({"hello":"world","n":42})";
    for (auto method :
         {http::verb::post, http::verb::put, http::verb::patch, http::verb::delete_}) {
        SCOPED_TRACE(std::string(http::to_string(method)));
        auto r = call(method, "/api/things/7", {{"Content-Type", "application/json"}}, body);
        ASSERT_EQ(r.status, 200u) << r.body;
        auto j = r.json();
        EXPECT_EQ(j["method"], std::string(http::to_string(method)));
        EXPECT_EQ(j["data"], body);
        EXPECT_EQ(j["json"]["n"], 42);
    }
}

TEST_F(RelayTest, InjectsUpstreamKeyAndNeverForwardsTheClientToken) {
    start("/anything", {{"TARGET_API_KEY", api_key}});
    auto r = call(http::verb::get, "/api/echo");
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json();
    EXPECT_EQ(j["headers"]["Authorization"], "Bearer " + api_key) << r.body;
    // httpbin echoes everything it received: the client's token must appear nowhere.
    EXPECT_FALSE(contains(r.body, token)) << r.body;
}

TEST_F(RelayTest, SendsNoAuthorizationUpstreamWithoutAKey) {
    start("/anything");
    auto r = call(http::verb::get, "/api/echo");
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json();
    EXPECT_FALSE(j["headers"].contains("Authorization")) << r.body;
    EXPECT_FALSE(contains(r.body, token)) << r.body;
}

TEST_F(RelayTest, PutsKeyInConfiguredHeaderReplacingTheClientsValue) {
    start("/anything", {{"TARGET_API_KEY", api_key},
                        {"TARGET_API_KEY_HEADER", "x-api-key"},
                        {"TARGET_API_KEY_FORMAT", "{key}"}});
    auto r = call(http::verb::get, "/api/echo", {{"x-api-key", "client-chosen-value"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json();
    EXPECT_EQ(j["headers"]["X-Api-Key"], api_key) << r.body;
    EXPECT_FALSE(contains(r.body, "client-chosen-value")) << r.body;
    EXPECT_FALSE(j["headers"].contains("Authorization")) << r.body;
    EXPECT_FALSE(contains(r.body, token)) << r.body;
}

TEST_F(RelayTest, SetsUpstreamHostAndForwardingHeaders) {
    start("/anything");
    // show_env=1 makes httpbin show the X-Forwarded-* headers it otherwise hides.
    auto r = call(http::verb::get, "/api/echo?show_env=1");
    ASSERT_EQ(r.status, 200u) << r.body;
    auto h = r.json()["headers"];
    EXPECT_EQ(h["Host"], "127.0.0.1:" + std::to_string(upstream.port())) << r.body;
    ASSERT_TRUE(h.contains("X-Forwarded-For")) << r.body;
    EXPECT_TRUE(contains(h["X-Forwarded-For"].get<std::string>(), "127.0.0.1")) << r.body;
    EXPECT_EQ(h["X-Forwarded-Proto"], "http") << r.body;
}

TEST_F(RelayTest, RelaysUpstreamStatusAndBody) {
    start("");
    auto r = call(http::verb::get, "/api/status/418");
    EXPECT_EQ(r.status, 418u);
    auto d = direct("/status/418");
    EXPECT_EQ(r.body, d.body);
    EXPECT_FALSE(r.body.empty());

    auto created = call(http::verb::post, "/api/status/201");
    EXPECT_EQ(created.status, 201u);
    auto missing = call(http::verb::get, "/api/status/404");
    EXPECT_EQ(missing.status, 404u);
}

TEST_F(RelayTest, RelaysNoContentAndKeepsTheConnectionUsable) {
    start("");
    http_connection c(proxy->port());
    auto r = c.request(http::verb::get, "/api/status/204", bearer(token));
    EXPECT_EQ(r.status, 204u);
    EXPECT_TRUE(r.body.empty());
    auto next = c.request(http::verb::get, "/api/get", bearer(token));
    EXPECT_EQ(next.status, 200u) << next.body;
}

TEST_F(RelayTest, PassesUpstreamHeadersThroughUntouched) {
    start("");
    auto r = call(http::verb::get,
                  "/api/response-headers?x-ratelimit-limit-requests=100&"
                  "x-ratelimit-remaining-requests=99&X-Custom=Mixed%20Case%20Value");
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.header("x-ratelimit-limit-requests"), "100") << r.headers_text();
    EXPECT_EQ(r.header("x-ratelimit-remaining-requests"), "99") << r.headers_text();
    EXPECT_EQ(r.header("X-Custom"), "Mixed Case Value") << r.headers_text();
    EXPECT_EQ(r.header("Access-Control-Allow-Origin"), "*") << r.headers_text();
    // ...beside the proxy's own limit headers.
    EXPECT_TRUE(r.has_header("X-RateLimit-Limit")) << r.headers_text();
}

TEST_F(RelayTest, RelaysBinaryBodyByteForByte) {
    start("");
    auto r = call(http::verb::get, "/api/bytes/65536?seed=7");
    ASSERT_EQ(r.status, 200u);
    auto d = direct("/bytes/65536?seed=7");
    ASSERT_EQ(d.body.size(), 65536u);
    EXPECT_EQ(r.body.size(), d.body.size());
    EXPECT_TRUE(r.body == d.body);
    EXPECT_EQ(r.header("Content-Type"), "application/octet-stream");
}

TEST_F(RelayTest, RelaysCompressedBodyWithoutDecodingIt) {
    start("");
    auto r = call(http::verb::get, "/api/gzip", {{"Accept-Encoding", "gzip"}});
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("Content-Encoding"), "gzip") << r.headers_text();
    ASSERT_GE(r.body.size(), 2u);
    EXPECT_EQ(static_cast<unsigned char>(r.body[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(r.body[1]), 0x8b);
}

TEST_F(RelayTest, AnswersHeadWithoutBodyAndKeepsTheConnectionUsable) {
    start("");
    http_connection c(proxy->port());
    auto head = c.request(http::verb::head, "/api/get", bearer(token));
    EXPECT_EQ(head.status, 200u);
    EXPECT_TRUE(head.body.empty());
    auto get = c.request(http::verb::get, "/api/get", bearer(token));
    EXPECT_EQ(get.status, 200u) << get.body;
    EXPECT_NO_THROW(get.json()) << get.body;
}

TEST_F(RelayTest, ServesManyRequestsOnOneClientConnection) {
    start("/anything");
    http_connection c(proxy->port());
    for (int i = 0; i < 5; ++i) {
        auto r = c.request(http::verb::get, "/api/n/" + std::to_string(i), bearer(token));
        ASSERT_EQ(r.status, 200u) << r.body;
        std::string url = r.json()["url"];
        EXPECT_TRUE(contains(url, "/anything/n/" + std::to_string(i))) << url;
        ASSERT_TRUE(r.keep_alive) << "request " << i;
    }
}

TEST_F(RelayTest, StreamsChunkedUpstreamResponse) {
    start("");
    // httpbin's /stream/N answers with chunked JSON lines.
    auto r = call(http::verb::get, "/api/stream/5");
    ASSERT_EQ(r.status, 200u);
    std::size_t lines = 0;
    for (char ch : r.body)
        lines += ch == '\n';
    EXPECT_EQ(lines, 5u) << r.body;
}

}  // namespace

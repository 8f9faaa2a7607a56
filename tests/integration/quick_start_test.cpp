// The README's quick start, step by step, against httpbin.
#include <gtest/gtest.h>

#include <regex>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
namespace http = boost::beast::http;

namespace {

class QuickStartTest : public proxy_fixture<httpbin_server> {};

TEST_F(QuickStartTest, RegisterThenCallTheApiThroughTheProxy) {
    start_proxy();

    // curl -s -X POST http://127.0.0.1:PORT/register
    auto reg = http_request(proxy->port(), http::verb::post, "/register");
    ASSERT_EQ(reg.status, 201u) << reg.body;
    // ... | grep -o '"token":"[^"]*"'
    std::smatch m;
    ASSERT_TRUE(std::regex_search(reg.body, m, std::regex(R"re("token":"([^"]+)")re"))) << reg.body;
    std::string token = m[1];

    // curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:PORT/api/get
    auto r = http_get(proxy->port(), "/api/get", bearer(token));
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_TRUE(r.header("Content-Type").rfind("application/json", 0) == 0);
    auto j = r.json();
    std::string url = j["url"];
    EXPECT_EQ(url, "http://127.0.0.1:" + std::to_string(upstream.port()) + "/get");
    EXPECT_TRUE(j["args"].empty());
    EXPECT_EQ(header_integer(r, "X-RateLimit-Limit"), 60);
    EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), 59);
}

}  // namespace

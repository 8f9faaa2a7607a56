#include <gtest/gtest.h>

#include <set>
#include <string>

#include "ratelimit_proxy/proxy/correlation.hpp"
#include "ratelimit_proxy/proxy/header_rewrite.hpp"
#include "ratelimit_proxy/proxy/outgoing_message.hpp"

namespace proxy = ratelimit_proxy::proxy;
namespace http = boost::beast::http;

namespace {

constexpr const char* good_traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

}  // namespace

TEST(RequestId, AcceptsOneTo128SafeCharacters) {
    EXPECT_TRUE(proxy::valid_request_id("a"));
    EXPECT_TRUE(proxy::valid_request_id("req_ABC-123.x:y"));
    EXPECT_TRUE(proxy::valid_request_id(std::string(128, 'z')));
    EXPECT_FALSE(proxy::valid_request_id(""));
    EXPECT_FALSE(proxy::valid_request_id(std::string(129, 'z')));
    EXPECT_FALSE(proxy::valid_request_id("a b"));
    EXPECT_FALSE(proxy::valid_request_id("a\"b"));
    EXPECT_FALSE(proxy::valid_request_id("a/b"));
    EXPECT_FALSE(proxy::valid_request_id("caf\xc3\xa9"));
}

TEST(RequestId, GeneratedIdsAre32LowerHexAndDistinct) {
    proxy::request_id_generator ids;
    std::set<std::string> seen;
    std::array<char, proxy::request_id_generator::size> id;
    for (int i = 0; i < 10000; ++i) {
        ids.next(id);
        std::string text(id.begin(), id.end());
        ASSERT_EQ(text.find_first_not_of("0123456789abcdef"), std::string::npos) << text;
        ASSERT_TRUE(proxy::valid_request_id(text));
        seen.insert(text);
    }
    EXPECT_EQ(seen.size(), 10000u);
    // Another generator (another worker) starts elsewhere.
    proxy::request_id_generator other;
    other.next(id);
    EXPECT_EQ(seen.count(std::string(id.begin(), id.end())), 0u);
}

TEST(Traceparent, AcceptsTheW3cExample) {
    EXPECT_TRUE(proxy::valid_traceparent(good_traceparent));
    EXPECT_EQ(proxy::trace_id_of(good_traceparent), "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST(Traceparent, RefusesWhatTheSpecRefuses) {
    const std::string good = good_traceparent;
    auto with = [&](std::size_t at, std::string_view part) {
        auto s = good;
        s.replace(at, part.size(), part);
        return s;
    };
    EXPECT_FALSE(proxy::valid_traceparent(with(0, "ff")));                   // version ff
    EXPECT_FALSE(proxy::valid_traceparent(with(0, "0A")));                   // upper-case hex
    EXPECT_FALSE(proxy::valid_traceparent(with(3, "4BF9")));                 // upper-case trace-id
    EXPECT_FALSE(proxy::valid_traceparent(with(3, std::string(32, '0'))));   // zero trace-id
    EXPECT_FALSE(proxy::valid_traceparent(with(36, std::string(16, '0'))));  // zero parent-id
    EXPECT_FALSE(proxy::valid_traceparent(with(53, "0g")));                  // flags not hex
    EXPECT_FALSE(proxy::valid_traceparent(with(35, "_")));                   // separator
    EXPECT_FALSE(proxy::valid_traceparent(good.substr(0, 54)));              // short
    EXPECT_FALSE(proxy::valid_traceparent(good + "-extra"));  // version 00: exactly 55
    EXPECT_FALSE(proxy::valid_traceparent(""));
    // A later version may carry more after a '-'.
    EXPECT_TRUE(proxy::valid_traceparent(with(0, "01") + "-extra"));
    EXPECT_TRUE(proxy::valid_traceparent(with(0, "01")));
    EXPECT_FALSE(proxy::valid_traceparent(with(0, "01") + "extra"));
}

TEST(RequestRewrite, DropsTheClientsRequestIdAndAnInvalidTrace) {
    proxy::request_rewrite rewrite{"api.example.com", "Authorization", ""};
    http::fields f;
    f.insert("X-Request-Id", "client-chosen");
    f.insert("x-request-id", "second");
    f.insert("traceparent", "junk");
    f.insert("tracestate", "vendor=1");
    proxy::rewrite_request(f, rewrite, "203.0.113.5",
                           {.drop_request_id = true, .keep_trace = false});
    EXPECT_EQ(f.count("X-Request-Id"), 0u);
    EXPECT_EQ(f.count("traceparent"), 0u);
    EXPECT_EQ(f.count("tracestate"), 0u);
}

TEST(RequestRewrite, PassesAValidTraceOn) {
    proxy::request_rewrite rewrite{"api.example.com", "Authorization", ""};
    http::fields f;
    f.insert("traceparent", good_traceparent);
    f.insert("tracestate", "vendor=1");
    proxy::rewrite_request(f, rewrite, "203.0.113.5",
                           {.drop_request_id = true, .keep_trace = true});
    EXPECT_EQ(f["traceparent"], good_traceparent);
    EXPECT_EQ(f["tracestate"], "vendor=1");
}

TEST(RequestRewrite, TheRequestIdGoesOutAsAnExtraHeaderLine) {
    http::request_header<> req;
    req.method(http::verb::get);
    req.target("/v1/x");
    req.version(11);
    req.set(http::field::host, "api.example.com");
    proxy::outgoing_message out;
    out.start(req, "X-Request-Id: abc\r\n");
    EXPECT_EQ(out.header_text(),
              "GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\nX-Request-Id: abc\r\n\r\n");
}

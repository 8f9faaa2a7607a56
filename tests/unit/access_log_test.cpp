#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/server/access_log.hpp"
#include "ratelimit_proxy/server/local_reply.hpp"
#include "ratelimit_proxy/server/logging.hpp"

namespace server = ratelimit_proxy::server;
namespace limit = ratelimit_proxy::limit;
namespace http = boost::beast::http;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

server::access_record denied_record() {
    server::access_record r;
    r.request_id = "0123456789abcdef0123456789abcdef";
    r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    r.method = "GET";
    r.path = "/api/chat";
    r.route = "chat";
    r.status = 429;
    r.peer = "10.0.0.1";
    r.client = "203.0.113.5";
    r.token_id = "0123456789abcdef";
    r.tier = "free";
    r.decision = "denied";
    r.policy = "per-token";
    r.has_remaining = true;
    r.remaining = 0;
    r.duration_ms = 1.25;
    r.redis_ms = 0.5;
    r.bytes_out = 300;
    r.user_agent = "curl/8 \"quoted\"\x01\xff";
    return r;
}

}  // namespace

TEST(AccessLog, JsonLineCarriesEveryField) {
    std::string line;
    server::format_access_json(denied_record(), line);
    const auto j = json::parse(line);
    EXPECT_EQ(j["request_id"], "0123456789abcdef0123456789abcdef");
    EXPECT_EQ(j["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(j["method"], "GET");
    EXPECT_EQ(j["path"], "/api/chat");
    EXPECT_EQ(j["route"], "chat");
    EXPECT_EQ(j["status"], 429);
    EXPECT_EQ(j["source"], "proxy");
    EXPECT_EQ(j["client"], "203.0.113.5");
    EXPECT_EQ(j["token_id"], "0123456789abcdef");
    EXPECT_EQ(j["tier"], "free");
    EXPECT_EQ(j["decision"], "denied");
    EXPECT_EQ(j["policy"], "per-token");
    EXPECT_EQ(j["remaining"], 0);
    EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 1.25);
    EXPECT_DOUBLE_EQ(j["redis_ms"].get<double>(), 0.5);
    EXPECT_EQ(j["bytes_in"], 0);
    EXPECT_EQ(j["bytes_out"], 300);
    EXPECT_EQ(j["user_agent"], "curl/8 \"quoted\"\x01\xc3\xbf");
    EXPECT_FALSE(j.contains("suppressed"));
}

TEST(AccessLog, UnknownFieldsAreNull) {
    server::access_record r;
    r.request_id = "x";
    r.method = "GET";
    r.path = "/nope";
    r.status = 404;
    r.client = "203.0.113.5";
    r.decision = "-";
    std::string line;
    server::format_access_json(r, line);
    const auto j = json::parse(line);
    EXPECT_TRUE(j["token_id"].is_null());
    EXPECT_TRUE(j["policy"].is_null());
    EXPECT_TRUE(j["remaining"].is_null());
    EXPECT_EQ(j["route"], "other");
}

TEST(AccessLog, TextLineKeepsItsFormatAndAddsTheRequestId) {
    auto r = denied_record();
    r.suppressed = 7;
    std::string line;
    server::format_access_text(r, line);
    EXPECT_EQ(line,
              "10.0.0.1 GET /api/chat 429 decision=denied upstream_ms=0.0 token=01234567 "
              "request_id=0123456789abcdef0123456789abcdef "
              "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 suppressed=7");
}

TEST(AccessLog, UtcTimeIsRfc3339WithMilliseconds) {
    std::string out;
    server::append_utc_time(out, std::chrono::system_clock::time_point(1796356533123ms));
    EXPECT_EQ(out, "2026-12-04T03:55:33.123Z");
}

TEST(DenialFlood, FirstDenialPerWindowIsLoggedThenACount) {
    server::denial_log_filter filter;
    const auto t0 = server::denial_log_filter::clock::now();
    std::uint64_t suppressed = 0;
    server::denial_log_filter::evicted dropped;
    EXPECT_TRUE(filter.admit("1.2.3.4", "p", "denied", 60, t0, suppressed, dropped));
    EXPECT_EQ(suppressed, 0u);
    for (int i = 0; i < 99; ++i)
        EXPECT_FALSE(filter.admit("1.2.3.4", "p", "denied", 60, t0 + 1s, suppressed, dropped));
    // Another client, another policy or another kind of denial has its own first line.
    EXPECT_TRUE(filter.admit("1.2.3.5", "p", "denied", 60, t0 + 1s, suppressed, dropped));
    EXPECT_TRUE(filter.admit("1.2.3.4", "q", "denied", 60, t0 + 1s, suppressed, dropped));
    EXPECT_TRUE(filter.admit("1.2.3.4", "p", "denied-cached", 60, t0 + 1s, suppressed, dropped));
    // After the window the next denial is logged with the count.
    EXPECT_TRUE(filter.admit("1.2.3.4", "p", "denied", 60, t0 + 61s, suppressed, dropped));
    EXPECT_EQ(suppressed, 99u);
    EXPECT_FALSE(filter.admit("1.2.3.4", "p", "denied", 60, t0 + 62s, suppressed, dropped));
}

TEST(DenialFlood, MemoryIsCappedAndAnEvictedCountIsReported) {
    server::denial_log_filter filter(3);
    const auto t0 = server::denial_log_filter::clock::now();
    std::uint64_t suppressed = 0;
    server::denial_log_filter::evicted dropped;
    filter.admit("a", "p", "denied", 60, t0, suppressed, dropped);
    filter.admit("a", "p", "denied", 60, t0, suppressed, dropped);  // counted
    filter.admit("b", "p", "denied", 60, t0, suppressed, dropped);
    filter.admit("c", "p", "denied", 60, t0, suppressed, dropped);
    EXPECT_EQ(filter.size(), 3u);
    EXPECT_TRUE(filter.admit("d", "p", "denied", 60, t0, suppressed, dropped));
    EXPECT_EQ(filter.size(), 3u);
    EXPECT_EQ(dropped.key, "a p denied");
    EXPECT_EQ(dropped.suppressed, 1u);
    filter.admit("e", "p", "denied", 60, t0, suppressed, dropped);  // evicts b: nothing to say
    EXPECT_EQ(dropped.suppressed, 0u);
}

TEST(ErrorBody, IsShapedForOpenAiClients) {
    server::verdict v;
    v.local(http::status::unauthorized, "unauthorized", "unknown \"token\"");
    std::string body;
    server::error_body(v, {.request_id = "rid"}, body);
    const auto j = json::parse(body);
    EXPECT_EQ(j["error"]["message"], "unknown \"token\"");
    EXPECT_EQ(j["error"]["type"], "authentication_error");
    EXPECT_EQ(j["error"]["code"], "unauthorized");
    EXPECT_TRUE(j["error"]["param"].is_null());
    EXPECT_EQ(j["request_id"], "rid");
    EXPECT_FALSE(j.contains("policy"));
}

TEST(ErrorBody, A429NamesItsPolicyUnlessHidden) {
    limit::policy p;
    p.name = "per-ip";
    p.key = limit::key_kind::client_ip;
    limit::rate_limit_headers headers;
    headers.retry_after = "7";
    server::verdict v;
    v.limit_headers = &headers;
    v.deciding.source = &p;
    v.deciding.quota = 10;
    v.deciding.window_seconds = 60;
    v.deciding.remaining = 0;
    v.too_many_requests("rate limit exceeded");
    std::string body;
    server::error_body(v, {.request_id = "rid", .expose_limits = true}, body);
    auto j = json::parse(body);
    EXPECT_EQ(j["error"]["type"], "rate_limited");
    EXPECT_EQ(j["error"]["code"], "rate_limit_exceeded");
    EXPECT_NE(j["error"]["message"].get<std::string>().find("per-ip"), std::string::npos);
    EXPECT_EQ(j["policy"], "per-ip");
    EXPECT_EQ(j["scope"], "ip");
    EXPECT_EQ(j["limit"], 10);
    EXPECT_EQ(j["window_seconds"], 60);
    EXPECT_EQ(j["remaining"], 0);
    EXPECT_EQ(j["retry_after"], 7);
    EXPECT_EQ(j["request_id"], "rid");

    body.clear();
    server::error_body(v, {.request_id = "rid", .expose_limits = false}, body);
    j = json::parse(body);
    EXPECT_EQ(j["error"]["message"], "rate limit exceeded; retry after 7 seconds");
    EXPECT_EQ(j["retry_after"], 7);
    EXPECT_EQ(j["request_id"], "rid");
    for (const char* hidden : {"policy", "scope", "limit", "window_seconds", "remaining"})
        EXPECT_FALSE(j.contains(hidden)) << hidden;
    EXPECT_EQ(body.find("per-ip"), std::string::npos);
}

TEST(ErrorBody, ScopesFollowTheKeyKind) {
    EXPECT_EQ(server::scope_name(limit::key_kind::token), "token");
    EXPECT_EQ(server::scope_name(limit::key_kind::client_ip), "ip");
    EXPECT_EQ(server::scope_name(limit::key_kind::token_route), "route");
    EXPECT_EQ(server::scope_name(limit::key_kind::global), "global");
}

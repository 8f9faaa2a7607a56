// JSON access logs, request ids, trace context, the denial flood rule, error bodies OpenAI's
// SDKs can read, and no secret in any log line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace http = boost::beast::http;

namespace {

constexpr const char* traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// One request per token bucket window of 2 s, for token "p".
constexpr const char* one_per_two_seconds = R"({"policies": [
    {"name": "p", "algorithm": "token_bucket", "limit": 1, "window": 2}]})";

class AccessLogTest : public proxy_fixture<beast_upstream> {
  protected:
    void start(env_list env, std::optional<std::string> config = std::nullopt) {
        env.emplace_back("LOG_FORMAT", "json");
        start_proxy({.base_path = "/up", .env = std::move(env), .config = std::move(config)});
    }

    // Every complete line of the log parsed; a line that is not one JSON object fails the
    // test. The last one may be cut where the output buffer was flushed: left for later.
    std::vector<json> log_objects() const {
        std::vector<json> out;
        auto log = proxy->log();
        log.erase(log.rfind('\n') == std::string::npos ? 0 : log.rfind('\n') + 1);
        std::istringstream in(log);
        for (std::string line; std::getline(in, line);) {
            if (line.empty())
                continue;
            try {
                out.push_back(json::parse(line));
            } catch (const std::exception& e) {
                ADD_FAILURE() << "not JSON: " << line;
            }
        }
        return out;
    }

    // The access lines (type "access") once `done` holds for them, or what there is after 4 s
    // (lines are flushed about once a second).
    std::vector<json> access_lines(const std::function<bool(const std::vector<json>&)>& done) {
        const auto deadline = std::chrono::steady_clock::now() + 4s;
        for (;;) {
            std::vector<json> found;
            for (auto& j : log_objects())
                if (j.value("type", "") == "access")
                    found.push_back(j);
            if (done(found) || std::chrono::steady_clock::now() >= deadline)
                return found;
            std::this_thread::sleep_for(50ms);
        }
    }
    std::vector<json> access_lines_for(const std::string& path, std::size_t n) {
        auto only = [&](const std::vector<json>& all) {
            std::vector<json> out;
            for (auto& j : all)
                if (j["path"] == path)
                    out.push_back(j);
            return out;
        };
        return only(
            access_lines([&](const std::vector<json>& all) { return only(all).size() >= n; }));
    }
};

TEST_F(AccessLogTest, JsonLinesCarryTheFieldsOfAllowedDeniedAndUnauthorizedRequests) {
    start({{"RATE_LIMIT", "1"}, {"THREADS", "1"}});
    const auto token = register_token(port());
    const std::string path = "/api/seq-" + random_hex(4);
    auto ok = http_get(port(), path + "?api_key=query-secret",
                       bearer(token, {{"User-Agent", "seq-test/1"}, {"traceparent", traceparent}}));
    ASSERT_EQ(ok.status, 200u) << ok.body;
    ASSERT_EQ(http_get(port(), path, bearer(token)).status, 429u);
    ASSERT_EQ(http_get(port(), path).status, 401u);

    auto lines = access_lines_for(path, 3);
    ASSERT_EQ(lines.size(), 3u);
    const auto& allowed = lines[0];
    EXPECT_EQ(allowed["method"], "GET");
    EXPECT_EQ(allowed["path"], path) << "the query stays out of the log";
    EXPECT_EQ(allowed["status"], 200);
    EXPECT_EQ(allowed["source"], "upstream");
    EXPECT_EQ(allowed["client"], "127.0.0.1");
    EXPECT_EQ(allowed["decision"], "allowed");
    EXPECT_EQ(allowed["policy"], "default");
    EXPECT_EQ(allowed["remaining"], 0);
    EXPECT_EQ(allowed["tier"], "default");
    EXPECT_EQ(allowed["route"], "other");
    EXPECT_EQ(allowed["user_agent"], "seq-test/1");
    EXPECT_EQ(allowed["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(allowed["request_id"], ok.header("X-Request-Id"));
    EXPECT_EQ(allowed["token_id"].get<std::string>().size(), 16u);
    EXPECT_GT(allowed["bytes_out"].get<long>(), 0);
    EXPECT_GE(allowed["duration_ms"].get<double>(), allowed["upstream_ms"].get<double>());
    EXPECT_GT(allowed["redis_ms"].get<double>(), 0.0);
    const auto time = allowed["time"].get<std::string>();
    ASSERT_EQ(time.size(), 24u) << time;  // 2026-12-04T03:55:33.123Z
    EXPECT_EQ(time[10], 'T');
    EXPECT_EQ(time[19], '.');
    EXPECT_EQ(time.back(), 'Z');

    const auto& denied = lines[1];
    EXPECT_EQ(denied["status"], 429);
    EXPECT_EQ(denied["source"], "proxy");
    EXPECT_EQ(denied["decision"], "denied");
    EXPECT_EQ(denied["policy"], "default");
    EXPECT_EQ(denied["remaining"], 0);
    EXPECT_EQ(denied["token_id"], allowed["token_id"]);

    const auto& unauthorized = lines[2];
    EXPECT_EQ(unauthorized["status"], 401);
    EXPECT_EQ(unauthorized["decision"], "unauthenticated");
    EXPECT_TRUE(unauthorized["token_id"].is_null());
    EXPECT_TRUE(unauthorized["policy"].is_null());

    // The other lines are JSON too, with a level and a message.
    bool listening = false;
    for (auto& j : log_objects())
        listening = listening || (j.value("level", "") == "info" &&
                                  contains(j.value("message", ""), "listening on"));
    EXPECT_TRUE(listening) << proxy->log();
}

TEST_F(AccessLogTest, RequestIdIsGeneratedSentUpstreamAndReturned) {
    start({});
    const auto token = register_token(port());
    auto r = http_get(port(), "/api/echo", bearer(token, {{"X-Request-Id", "client-picked"}}));
    ASSERT_EQ(r.status, 200u);
    const auto id = r.header("X-Request-Id");
    EXPECT_EQ(id.size(), 32u) << id;
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    EXPECT_EQ(r.header_count("X-Request-Id"), 1u);
    ASSERT_EQ(upstream.requests().size(), 1u);
    const auto sent = upstream.requests()[0];
    EXPECT_EQ(sent.header("X-Request-Id"), id) << "an untrusted client's id is replaced";
    EXPECT_FALSE(contains(sent.raw_headers(), "client-picked")) << sent.raw_headers();

    auto second = http_get(port(), "/api/echo", bearer(token));
    EXPECT_NE(second.header("X-Request-Id"), id);

    // Local answers carry it too, in the header and in the body.
    auto missing = http_get(port(), "/nowhere");
    EXPECT_EQ(missing.status, 404u);
    EXPECT_EQ(missing.json()["request_id"], missing.header("X-Request-Id"));
    EXPECT_EQ(missing.header("X-Request-Id").size(), 32u);
}

TEST_F(AccessLogTest, TheUpstreamsOwnRequestIdIsKeptBesideOurs) {
    start({});
    const auto token = register_token(port());
    auto r = http_get(port(), "/api/hop", bearer(token));
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.header_count("X-Request-Id"), 1u);
    EXPECT_EQ(r.header("X-Request-Id").size(), 32u) << r.headers_text();
    EXPECT_EQ(r.header("X-Upstream-Request-Id"), "req_hop_upstream_1") << r.headers_text();
    auto lines = access_lines_for("/api/hop", 1);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0]["upstream_request_id"], "req_hop_upstream_1");
    EXPECT_EQ(lines[0]["request_id"], r.header("X-Request-Id"));
    // Where the upstream sends none, there is none.
    auto echo = http_get(port(), "/api/echo", bearer(token));
    EXPECT_FALSE(echo.has_header("X-Upstream-Request-Id")) << echo.headers_text();
}

TEST_F(AccessLogTest, RequestIdFromATrustedProxyIsKeptWhenSane) {
    start({{"TRUSTED_PROXIES", "127.0.0.0/8"}});
    const auto token = register_token(port());
    auto r = http_get(port(), "/api/echo", bearer(token, {{"X-Request-Id", "lb-1234:abc.def_9"}}));
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("X-Request-Id"), "lb-1234:abc.def_9");
    EXPECT_EQ(upstream.requests().back().header("X-Request-Id"), "lb-1234:abc.def_9");
    auto lines = access_lines([](const std::vector<json>& all) {
        for (auto& j : all)
            if (j["request_id"] == "lb-1234:abc.def_9")
                return true;
        return false;
    });
    bool logged = false;
    for (auto& j : lines)
        logged = logged || j["request_id"] == "lb-1234:abc.def_9";
    EXPECT_TRUE(logged) << proxy->log();

    // An insane one is replaced even from a trusted proxy.
    auto bad = http_get(port(), "/api/echo", bearer(token, {{"X-Request-Id", "has space"}}));
    EXPECT_EQ(bad.header("X-Request-Id").size(), 32u);
    EXPECT_EQ(upstream.requests().back().header("X-Request-Id"), bad.header("X-Request-Id"));
    auto unauthorized = http_get(port(), "/api/echo", {{"X-Request-Id", "lb-401"}});
    EXPECT_EQ(unauthorized.status, 401u);
    EXPECT_EQ(unauthorized.json()["request_id"], "lb-401");
}

TEST_F(AccessLogTest, ValidTraceContextIsPassedOnAndAnInvalidOneDropped) {
    start({});
    const auto token = register_token(port());
    ASSERT_EQ(http_get(port(), "/api/echo",
                       bearer(token, {{"traceparent", traceparent}, {"tracestate", "v=1"}}))
                  .status,
              200u);
    auto sent = upstream.requests().back();
    EXPECT_EQ(sent.header("traceparent"), traceparent);
    EXPECT_EQ(sent.header("tracestate"), "v=1");

    const std::string zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    ASSERT_EQ(http_get(port(), "/api/echo",
                       bearer(token, {{"traceparent", zero_trace}, {"tracestate", "v=1"}}))
                  .status,
              200u);
    sent = upstream.requests().back();
    EXPECT_FALSE(sent.has_header("traceparent")) << sent.raw_headers();
    EXPECT_FALSE(sent.has_header("tracestate")) << sent.raw_headers();
}

TEST_F(AccessLogTest, AFloodOfDenialsLogsItsFirstLineAndThenACount) {
    start({{"THREADS", "1"}}, one_per_two_seconds);
    const auto token = register_token(port());
    const std::string path = "/api/flood-" + random_hex(4);
    ASSERT_EQ(http_get(port(), path, bearer(token)).status, 200u);
    constexpr int flood = 20;
    for (int i = 0; i < flood; ++i)
        ASSERT_EQ(http_get(port(), path, bearer(token)).status, 429u);
    // One line per kind of denial (the store's, then the deny cache's), the rest counted.
    auto first = access_lines_for(path, 3);
    std::size_t denial_lines = 0;
    for (auto& j : first)
        denial_lines += j["status"] == 429;
    EXPECT_GE(denial_lines, 1u);
    EXPECT_LE(denial_lines, 2u) << proxy->log();

    // After the window the next denials are logged again, carrying what was not.
    std::this_thread::sleep_for(2200ms);
    int more = 0;
    while (more < 10 && http_get(port(), path, bearer(token)).status != 429)
        ++more;
    for (int i = 0; i < 3; ++i)
        http_get(port(), path, bearer(token));
    std::uint64_t reported = 0;
    access_lines([&](const std::vector<json>& all) {
        reported = 0;
        for (auto& j : all)
            if (j["path"] == path && j.contains("suppressed"))
                reported += j["suppressed"].get<std::uint64_t>();
        return reported + denial_lines == flood;
    });
    EXPECT_EQ(reported + denial_lines, static_cast<std::uint64_t>(flood)) << proxy->log();
}

TEST_F(AccessLogTest, A429BodyExplainsItselfUnlessHidden) {
    start({{"THREADS", "1"}}, one_per_two_seconds);
    auto token = register_token(port());
    ASSERT_EQ(http_get(port(), "/api/echo", bearer(token)).status, 200u);
    auto r = http_get(port(), "/api/echo", bearer(token));
    ASSERT_EQ(r.status, 429u);
    auto j = r.json();
    EXPECT_EQ(j["error"]["type"], "rate_limited");
    EXPECT_EQ(j["error"]["code"], "rate_limit_exceeded");
    EXPECT_TRUE(j["error"]["param"].is_null());
    EXPECT_TRUE(contains(j["error"]["message"].get<std::string>(), "\"p\"")) << r.body;
    EXPECT_EQ(j["policy"], "p");
    EXPECT_EQ(j["scope"], "token");
    EXPECT_EQ(j["limit"], 1);
    EXPECT_EQ(j["window_seconds"], 2);
    EXPECT_EQ(j["remaining"], 0);
    EXPECT_EQ(std::to_string(j["retry_after"].get<long>()), r.header("Retry-After"));
    EXPECT_EQ(j["request_id"], r.header("X-Request-Id"));

    start({{"THREADS", "1"}, {"EXPOSE_LIMIT_DETAILS", "false"}}, one_per_two_seconds);
    token = register_token(port());
    ASSERT_EQ(http_get(port(), "/api/echo", bearer(token)).status, 200u);
    r = http_get(port(), "/api/echo", bearer(token));
    ASSERT_EQ(r.status, 429u);
    j = r.json();
    EXPECT_EQ(j["error"]["code"], "rate_limit_exceeded");
    EXPECT_FALSE(contains(r.body, "\\\"p\\\"")) << r.body;
    for (const char* hidden : {"policy", "scope", "limit", "window_seconds", "remaining"})
        EXPECT_FALSE(j.contains(hidden)) << hidden << " in " << r.body;
    EXPECT_EQ(std::to_string(j["retry_after"].get<long>()), r.header("Retry-After"));
    EXPECT_EQ(j["request_id"], r.header("X-Request-Id"));
}

TEST_F(AccessLogTest, ErrorsAreShapedForOpenAiClients) {
    start({});
    for (auto [target, status, type, code] :
         {std::tuple{"/api/echo", 401u, "authentication_error", "unauthorized"},
          std::tuple{"/nowhere", 404u, "invalid_request_error", "not_found"}}) {
        auto r = http_get(port(), target);
        ASSERT_EQ(r.status, status) << r.body;
        auto j = r.json();
        ASSERT_TRUE(j["error"].is_object()) << r.body;
        EXPECT_TRUE(j["error"]["message"].is_string()) << r.body;
        EXPECT_EQ(j["error"]["type"], type) << r.body;
        EXPECT_EQ(j["error"]["code"], code) << r.body;
        EXPECT_TRUE(j["error"].contains("param")) << r.body;
        EXPECT_EQ(j["request_id"], r.header("X-Request-Id"));
    }
}

TEST_F(AccessLogTest, NoSecretReachesAnyLogLine) {
    const std::string api_key = "sk-upstream-" + random_hex(16);
    const std::string admin_token = "adm_" + random_hex(20);
    const std::string secret = "reg-secret-" + random_hex(12);
    const auto admin_port = free_port();
    start({{"LOG_LEVEL", "debug"},
           {"TARGET_API_KEY", api_key},
           {"ADMIN_TOKEN", admin_token},
           {"ADMIN_BIND_ADDRESS", "127.0.0.1:" + std::to_string(admin_port)},
           {"RATE_LIMIT", "2"}},
          R"({"registration": {"mode": "secret", "secret": ")" + secret + R"("}})");
    ASSERT_TRUE(wait_for_port(admin_port, 5s)) << proxy->log();

    EXPECT_EQ(http_request(port(), http::verb::post, "/register",
                           {{"X-Registration-Secret", "wrong-" + secret}})
                  .status,
              403u);
    auto reg =
        http_request(port(), http::verb::post, "/register", {{"X-Registration-Secret", secret}});
    ASSERT_EQ(reg.status, 201u) << reg.body;
    const auto token = reg.json()["token"].get<std::string>();
    int denied = 0;
    for (int i = 0; i < 5; ++i)
        denied += http_get(port(), "/api/echo?key=" + token, bearer(token)).status == 429;
    EXPECT_GE(denied, 1);
    EXPECT_EQ(http_get(port(), "/api/echo", bearer(token + "x")).status, 401u);
    EXPECT_EQ(http_get(port(), "/api/echo", {{"Authorization", token}}).status, 401u);
    auto stats = http_get(admin_port, "/admin/stats", {{"Authorization", "Bearer " + admin_token}});
    EXPECT_EQ(stats.status, 200u) << stats.body;
    EXPECT_EQ(http_get(admin_port, "/admin/stats", {{"Authorization", "Bearer wrong"}}).status,
              401u);

    // Wait for the lines to be flushed: the last request's line is in.
    access_lines([](const std::vector<json>& all) {
        for (auto& j : all)
            if (j["status"] == 401 && j["decision"] == "unauthenticated")
                return true;
        return false;
    });
    const auto log = proxy->log();
    EXPECT_TRUE(contains(log, "\"type\":\"access\"")) << log;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
        EXPECT_FALSE(contains(line, token)) << line;
        EXPECT_FALSE(contains(line, token.substr(4, 20))) << line;
        EXPECT_FALSE(contains(line, api_key)) << line;
        EXPECT_FALSE(contains(line, admin_token)) << line;
        EXPECT_FALSE(contains(line, secret)) << line;
    }
}

}  // namespace

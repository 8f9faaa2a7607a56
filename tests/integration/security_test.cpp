// Secrets stay where they belong: the upstream key never reaches a client or a log line (even
// at LOG_LEVEL=trace, even in error answers), the client's token never reaches the upstream,
// a client cannot supply its own key header, Redis holds only token hashes, and error answers
// reveal nothing about the proxy's insides.
#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <memory>
#include <thread>

#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "proxy_process.hpp"
#include "ratelimit_proxy/auth/token.hpp"
#include "redis_server.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;

namespace {

// One answer as the client saw it, with what provoked it.
struct exchange {
    std::string what;
    http_response response;
    std::string error;  // no answer
};

class SecurityTest : public proxy_fixture<beast_upstream> {
  protected:
    static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }

    const std::string api_key = "sk-secret-" + random_hex(16);

    void start(env_list env, std::optional<std::string> config = std::nullopt,
               std::string target = {}) {
        env.emplace(env.begin(), "TARGET_API_KEY", api_key);
        start_proxy({.base_path = "/base",
                     .target_url = std::move(target),
                     .env = std::move(env),
                     .config = std::move(config)});
    }
    std::string host() const { return "Host: 127.0.0.1:" + std::to_string(port()) + "\r\n"; }

    exchange raw(const std::string& what, const std::string& bytes, std::uint16_t to = 0) {
        exchange e{what, {}, {}};
        try {
            http_connection c(to ? to : port(), 5s);
            try {
                c.send_raw(bytes);
            } catch (const std::exception&) {
            }
            e.response = c.read_response();
        } catch (const std::exception& ex) {
            e.error = ex.what();
        }
        return e;
    }

    exchange get(const std::string& what, const std::string& target, const header_list& headers,
                 std::uint16_t to = 0) {
        exchange e{what, {}, {}};
        try {
            e.response = http_request(to ? to : port(), http::verb::get, target, headers, {}, 5s);
        } catch (const std::exception& ex) {
            e.error = ex.what();
        }
        return e;
    }

    // Provokes every kind of answer the proxy gives: 200, upstream errors passed through,
    // and its own 400, 401, 404, 405, 413, 429, 431, 502, 504, then 503 with Redis gone.
    // Needs the proxy started with RATE_LIMIT=5, max_body_bytes=1024, max_header_bytes=4096,
    // response_timeout_ms=500.
    std::vector<exchange> provoke_every_answer() {
        std::vector<exchange> out;
        auto token = register_token(port());
        auto spent = register_token(port());
        out.push_back(get("200", "/api/ok/status?code=200", bearer(token)));
        out.push_back(get("upstream 500", "/api/up/status?code=500", bearer(token)));
        out.push_back(raw("400 garbage", "THIS IS NOT HTTP\r\n\r\n"));
        out.push_back(raw("400 bad header",
                          "GET /api/x/echo HTTP/1.1\r\n" + host() + "No colon here\r\n\r\n"));
        out.push_back(raw("400 traversal", "GET /api/../x HTTP/1.1\r\n" + host() +
                                               "Authorization: Bearer " + token + "\r\n\r\n"));
        out.push_back(get("401 no token", "/api/x/echo", {}));
        out.push_back(get("401 unknown token", "/api/x/echo",
                          bearer(ratelimit_proxy::auth::generate_token())));
        out.push_back(get("401 wrong scheme", "/api/x/echo",
                          {{"Authorization", "Basic dXNlcjpwYXNzd29yZA=="}}));
        out.push_back(get("404", "/nothing-here", {}));
        out.push_back(get("405", "/register", {}));
        out.push_back(raw("413", "POST /api/x/echo HTTP/1.1\r\n" + host() +
                                     "Authorization: Bearer " + token +
                                     "\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'b')));
        out.push_back(raw("431", "GET /api/x/echo HTTP/1.1\r\n" + host() +
                                     "X-Big: " + std::string(8000, 'h') + "\r\n\r\n"));
        out.push_back(get("502", "/api/x/drop", bearer(token)));
        out.push_back(get("504", "/api/x/never", bearer(token)));
        for (int i = 0; i < 5; ++i)
            get("spend", "/api/x/status?code=200", bearer(spent));
        out.push_back(get("429", "/api/x/status?code=200", bearer(spent)));
        redis.kill_hard();
        out.push_back(get("503 unverifiable token", "/api/x/echo",
                          bearer(ratelimit_proxy::auth::generate_token())));
        out.push_back(raw("503 register",
                          "POST /register HTTP/1.1\r\n" + host() + "Content-Length: 0\r\n\r\n"));
        out.push_back(get("503 ready", "/ready", {}));
        return out;
    }

    // The whole log, once it stopped growing (it is written asynchronously).
    std::string settled_log() {
        std::string log = proxy->log();
        for (int i = 0; i < 30; ++i) {
            std::this_thread::sleep_for(100ms);
            auto now = proxy->log();
            if (now.size() == log.size() && i >= 12)
                break;
            log = std::move(now);
        }
        return log;
    }
};

const std::map<std::string, unsigned> expected_status = {
    {"200", 200},
    {"upstream 500", 500},
    {"400 garbage", 400},
    {"400 bad header", 400},
    {"400 traversal", 400},
    {"401 no token", 401},
    {"401 unknown token", 401},
    {"401 wrong scheme", 401},
    {"404", 404},
    {"405", 405},
    {"413", 413},
    {"431", 431},
    {"502", 502},
    {"504", 504},
    {"429", 429},
    {"503 unverifiable token", 503},
    {"503 register", 503},
    {"503 ready", 503},
};

TEST_F(SecurityTest, KeepsTheUpstreamKeyOutOfEveryAnswerAndTheTraceLog) {
    start({{"RATE_LIMIT", "5"}, {"LOG_LEVEL", "trace"}},
          R"({"server":{"max_body_bytes":1024,"max_header_bytes":4096},)"
          R"("upstream":{"response_timeout_ms":500}})");
    auto answers = provoke_every_answer();
    for (const auto& e : answers) {
        SCOPED_TRACE(e.what);
        EXPECT_TRUE(e.error.empty()) << "no answer: " << e.error;
        EXPECT_EQ(e.response.status, expected_status.at(e.what)) << e.response.body;
        EXPECT_FALSE(contains(e.response.headers_text(), api_key)) << e.response.headers_text();
        EXPECT_FALSE(contains(e.response.body, api_key)) << e.response.body;
    }
    // The key did go upstream (the check above is not vacuous).
    ASSERT_FALSE(upstream.requests().empty());
    EXPECT_EQ(upstream.requests().front().header("Authorization"), "Bearer " + api_key);

    auto log = settled_log();
    EXPECT_TRUE(contains(log, "decision=")) << "no access log at trace level?\n" << log;
    EXPECT_FALSE(contains(log, api_key)) << "the upstream key is in the log";
    // Not even a recognisable piece of it.
    EXPECT_FALSE(contains(log, api_key.substr(10, 16)));
}

TEST_F(SecurityTest, NeverLogsARawClientToken) {
    start({{"RATE_LIMIT", "100"}, {"LOG_LEVEL", "trace"}});
    std::vector<std::string> tokens;
    for (int i = 0; i < 3; ++i)
        tokens.push_back(register_token(port()));
    for (const auto& t : tokens) {
        EXPECT_EQ(http_get(port(), "/api/x/echo", bearer(t)).status, 200u);
        EXPECT_EQ(http_get(port(), "/api/x/echo", {{"Authorization", "Bearer " + t + "x"}}).status,
                  401u);
    }
    auto log = settled_log();
    EXPECT_TRUE(contains(log, "decision=")) << log;
    for (const auto& t : tokens)
        EXPECT_FALSE(contains(log, t.substr(4, 20))) << "a client token is in the log: " << t;
}

// The client's token is removed however it is spelled or repeated; the upstream sees only
// the configured key.
TEST_F(SecurityTest, NeverForwardsTheClientTokenUpstream) {
    start({{"RATE_LIMIT", "100"}});
    auto token = register_token(port());
    auto secret = token.substr(4);  // the random part
    const std::string h = host();
    const std::vector<std::pair<std::string, std::string>> variants = {
        {"plain", "Authorization: Bearer " + token + "\r\n"},
        {"lower case", "authorization: bearer " + token + "\r\n"},
        {"twice", "Authorization: Bearer " + token + "\r\nAuthorization: Bearer " + token + "\r\n"},
        {"with proxy-authorization",
         "Authorization: Bearer " + token + "\r\nProxy-Authorization: Bearer " + token + "\r\n"},
        {"named in connection", "Connection: X-Token\r\nX-Token: " + token +
                                    "\r\nAuthorization: Bearer " + token + "\r\n"},
    };
    for (const auto& [name, lines] : variants) {
        SCOPED_TRACE(name);
        http_connection c(port(), 5s);
        c.send_raw("GET /api/" + std::to_string(name.size()) + "/echo HTTP/1.1\r\n" + h + lines +
                   "\r\n");
        auto r = c.read_response();
        EXPECT_EQ(r.status, 200u) << r.body;
    }
    // A POST whose headers are streamed ahead of its body, too.
    EXPECT_EQ(
        http_request(port(), http::verb::post, "/api/post/echo", bearer(token), "body").status,
        200u);
    auto recs = upstream.requests();
    ASSERT_EQ(recs.size(), variants.size() + 1);
    for (const auto& rec : recs) {
        SCOPED_TRACE(rec.target);
        EXPECT_FALSE(contains(rec.raw_headers(), secret)) << rec.raw_headers();
        EXPECT_FALSE(contains(rec.target, secret));
        std::size_t auth_headers = 0;
        for (auto& [k, v] : rec.headers)
            auth_headers += boost::beast::iequals(k, "authorization") ? 1 : 0;
        EXPECT_EQ(auth_headers, 1u) << rec.raw_headers();
        EXPECT_EQ(rec.header("Authorization"), "Bearer " + api_key);
    }
}

// TARGET_API_KEY_HEADER=x-api-key: whatever x-api-key headers the client sends, the upstream
// gets exactly one, with the configured key; the client's Authorization is still removed.
TEST_F(SecurityTest, ReplacesClientSuppliedCopiesOfTheKeyHeader) {
    start({{"RATE_LIMIT", "100"},
           {"TARGET_API_KEY_HEADER", "x-api-key"},
           {"TARGET_API_KEY_FORMAT", "{key}"}});
    auto token = register_token(port());
    http_connection c(port(), 5s);
    c.send_raw("GET /api/k/echo HTTP/1.1\r\n" + host() + "x-api-key: forged-one\r\n" +
               "Authorization: Bearer " + token + "\r\n" + "X-API-KEY: forged-two\r\n\r\n");
    auto r = c.read_response();
    EXPECT_EQ(r.status, 200u) << r.body;
    auto r2 =
        c.request(http::verb::get, "/api/k2/echo", bearer(token, {{"X-Api-Key", "forged-three"}}));
    EXPECT_EQ(r2.status, 200u);
    auto recs = upstream.requests();
    ASSERT_EQ(recs.size(), 2u);
    for (const auto& rec : recs) {
        SCOPED_TRACE(rec.target);
        std::size_t key_headers = 0;
        for (auto& [k, v] : rec.headers) {
            if (boost::beast::iequals(k, "x-api-key")) {
                ++key_headers;
                EXPECT_EQ(v, api_key);
            }
        }
        EXPECT_EQ(key_headers, 1u) << rec.raw_headers();
        EXPECT_FALSE(contains(rec.raw_headers(), "forged")) << rec.raw_headers();
        EXPECT_FALSE(rec.has_header("Authorization")) << rec.raw_headers();
        EXPECT_FALSE(contains(rec.raw_headers(), token.substr(4))) << rec.raw_headers();
    }
}

// Redis holds SHA-256 digests of tokens, never a token or a piece of one.
TEST_F(SecurityTest, StoresOnlyTokenHashesInRedis) {
    start({{"RATE_LIMIT", "100"}});
    std::vector<std::string> tokens;
    for (int i = 0; i < 5; ++i) {
        tokens.push_back(register_token(port()));
        for (int k = 0; k < 2; ++k)
            ASSERT_EQ(http_get(port(), "/api/x/echo", bearer(tokens.back())).status, 200u);
    }
    std::size_t keys = 0;
    auto dump = dump_redis(redis, &keys);
    EXPECT_GE(keys, 10u) << "a token hash and a bucket per token:\n" << dump;
    for (const auto& t : tokens) {
        SCOPED_TRACE(t);
        EXPECT_TRUE(contains(dump, sha256_hex(t))) << "its SHA-256 is what Redis keeps:\n" << dump;
        EXPECT_FALSE(contains(dump, t));
        // No 12-character window of the random part, in any key or value.
        auto random_part = t.substr(4);
        for (std::size_t i = 0; i + 12 <= random_part.size(); ++i)
            ASSERT_FALSE(contains(dump, random_part.substr(i, 12)))
                << "part of a raw token is stored in Redis:\n"
                << dump;
    }
}

// Error answers are short JSON; they never show file paths, library names, exception text,
// addresses or ports of the upstream or Redis.
TEST_F(SecurityTest, ErrorAnswersRevealNoInternals) {
    start({{"RATE_LIMIT", "5"}}, R"({"server":{"max_body_bytes":1024,"max_header_bytes":4096},)"
                                 R"("upstream":{"response_timeout_ms":500}})");
    // A second proxy whose upstream refuses connections, for the other kind of 502.
    const auto dead_port = free_port();
    redis_server redis2;
    proxy_process refused{{.target_url = "http://127.0.0.1:" + std::to_string(dead_port) + "/v1",
                           .redis_url = redis2.url(),
                           .env = {{"TARGET_API_KEY", api_key}}}};
    auto refused_token = register_token(refused.port());
    auto refused_answer = get("502 refused", "/api/x/echo", bearer(refused_token), refused.port());

    auto answers = provoke_every_answer();
    answers.push_back(refused_answer);
    const std::vector<std::string> forbidden = {".cpp",        ".hpp",
                                                ".ipp",        "/src/",
                                                "/usr/",       "/include/",
                                                "/work",       "/tmp/",
                                                "boost",       "Boost",
                                                "hiredis",     "asio",
                                                "beast",       "spdlog",
                                                "nlohmann",    "std::",
                                                "exception",   "what()",
                                                "terminate",   "Segmentation",
                                                "stack",       "#0 ",
                                                "errno",       "Connection refused",
                                                "End of file", "Operation canceled",
                                                "system:",     "redis://",
                                                "127.0.0.1",   "localhost",
                                                "sk-secret"};
    const std::vector<std::string> ports = {
        std::to_string(upstream.port()), std::to_string(redis.port()),
        std::to_string(redis2.port()), std::to_string(dead_port)};
    for (const auto& e : answers) {
        if (e.what == "200" || e.what == "upstream 500")
            continue;  // the upstream's own answers
        SCOPED_TRACE(e.what);
        const auto& r = e.response;
        EXPECT_TRUE(e.error.empty()) << "no answer: " << e.error;
        if (e.what == "502 refused") {
            EXPECT_EQ(r.status, 502u) << r.body;
        } else {
            EXPECT_EQ(r.status, expected_status.at(e.what)) << r.body;
        }
        EXPECT_TRUE(r.header("Content-Type").rfind("application/json", 0) == 0) << r.headers_text();
        EXPECT_LT(r.body.size(), 512u) << r.body;
        try {
            auto j = r.json();
            EXPECT_TRUE(j.is_object()) << r.body;
        } catch (const std::exception&) {
            ADD_FAILURE() << "not JSON: " << r.body;
        }
        const std::string text = r.headers_text() + "\n" + r.body;
        for (const auto& f : forbidden)
            EXPECT_FALSE(contains(text, f)) << "\"" << f << "\" in:\n" << text;
        for (const auto& p : ports)
            EXPECT_FALSE(contains(r.body, p)) << "port " << p << " in: " << r.body;
    }
}

}  // namespace

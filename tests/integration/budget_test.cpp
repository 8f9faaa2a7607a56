// Budgets on what requests cost (meter "tokens" and "usd"), seen from clients through a real
// proxy, a real Redis and the mock OpenAI/Anthropic upstream: exact charges per dialect, JSON
// and streams, the usage chunk hidden from a client that did not ask for it, every ending
// (usage, upstream error, cut, client gone, proxy killed), zero overshoot across instances,
// model prices and model-scoped budgets, the answers and headers, GET /budget.
#include <gtest/gtest.h>
#include <signal.h>

#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "mock_llm_upstream.hpp"
#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "sdk_runner.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;
using nlohmann::json;

namespace {

// One policy (JSON object text) and the rest of a config.
std::string config_with(const std::string& policies, const std::string& extra = "") {
    return R"({"policies": [)" + policies + "]" + extra + "}";
}

const std::string daily_tokens =
    R"({"name": "daily_tokens", "algorithm": "fixed_window", "meter": "tokens", "limit": 100000,
        "window": "day"})";
const std::string pricing =
    R"(, "pricing": {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60},
                     "claude-*": {"input": 3, "cached_input": 0.3, "cache_write": 3.75,
                                  "output": 15}})";

std::string chat_body(const std::string& model = "gpt-4o-mini", bool stream = false,
                      std::optional<int> max_tokens = 50, bool include_usage = false) {
    json b = {{"model", model}, {"messages", {{{"role", "user"}, {"content", "Say hi"}}}}};
    if (stream)
        b["stream"] = true;
    if (include_usage)
        b["stream_options"] = {{"include_usage", true}};
    if (max_tokens)
        b["max_tokens"] = *max_tokens;
    return b.dump();
}

class BudgetTest : public proxy_fixture<mock_llm_upstream> {
  protected:
    void start(const std::string& config, env_list env = {}) {
        start_proxy({.base_path = "/v1", .env = std::move(env), .config = config});
        token = register_token(proxy->port());
    }

    http_response post(const std::string& path, const std::string& body, header_list extra = {},
                       std::uint16_t on = 0) {
        extra.emplace_back("Content-Type", "application/json");
        return http_request(on ? on : proxy->port(), http::verb::post, path,
                            bearer(token, std::move(extra)), body, 20s);
    }
    http_response chat(const std::string& body, header_list extra = {}, std::uint16_t on = 0) {
        return post("/api/chat/completions", body, std::move(extra), on);
    }

    // For answers that end short (a cut stream): the status, 0 when the client gave up.
    unsigned try_chat(const std::string& body, header_list extra = {}) {
        try {
            return chat(body, std::move(extra)).status;
        } catch (const std::exception&) {
            return 0;
        }
    }

    json budget() {
        auto r = http_get(proxy->port(), "/budget", bearer(token));
        EXPECT_EQ(r.status, 200u) << r.body;
        return r.json();
    }
    json budget_named(const std::string& name) {
        const auto all = budget();
        for (const auto& b : all["budgets"])
            if (b["policy"] == name)
                return b;
        ADD_FAILURE() << "no budget " << name << " in " << all.dump();
        return {};
    }
    // The fixed window's spent count as Redis holds it (0 when absent).
    double stored_count(const std::string& policy) {
        const auto c = redis.command({"HGET", "{rlp}:rl:" + policy + ":" + token_id(token), "c"});
        return c.empty() ? 0 : std::stod(c);
    }
    double held(const std::string& policy) { return budget_named(policy)["held"].get<double>(); }
    double spent(const std::string& policy) { return budget_named(policy)["spent"].get<double>(); }

    static bool within(std::chrono::milliseconds timeout, const std::function<bool()>& check) {
        const auto until = std::chrono::steady_clock::now() + timeout;
        while (!check()) {
            if (std::chrono::steady_clock::now() > until)
                return false;
            std::this_thread::sleep_for(20ms);
        }
        return true;
    }
    bool spent_becomes(const std::string& policy, double value, std::chrono::milliseconds t = 3s) {
        return within(t, [&] { return spent(policy) == value && held(policy) == 0; });
    }
};

TEST_F(BudgetTest, ChatCompletionIsChargedItsExactUsage) {
    start(config_with(daily_tokens));
    auto r = chat(chat_body(), {{"x-mock-usage", "30,50"}});
    ASSERT_EQ(r.status, 200u) << r.body << proxy->log();
    EXPECT_EQ(r.json()["usage"]["total_tokens"], 80);
    EXPECT_EQ(r.header("X-Budget-Unit"), "tokens");
    EXPECT_EQ(r.header("X-Budget-Limit"), "100000");
    // While it ran, its reservation (body bytes + max_tokens) was held.
    const auto remaining = header_integer(r, "X-Budget-Remaining");
    ASSERT_TRUE(remaining);
    EXPECT_LT(*remaining, 100000 - 50);
    EXPECT_TRUE(spent_becomes("daily_tokens", 80)) << budget().dump();
    EXPECT_EQ(stored_count("daily_tokens"), 80);
    // The upstream was asked for an uncompressed body, and got the real key's header.
    const auto seen = upstream.last_request();
    ASSERT_TRUE(seen);
    EXPECT_EQ(seen->header("accept-encoding"), "identity");
}

TEST_F(BudgetTest, StreamWithoutIncludeUsageIsChargedAndTheUsageChunkIsHidden) {
    start(config_with(daily_tokens));
    auto r = chat(chat_body("gpt-4o-mini", true), {{"x-mock-usage", "12,34"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    const auto seen = upstream.last_request();
    ASSERT_TRUE(seen);
    EXPECT_TRUE(seen->include_usage) << seen->body;  // the proxy asked for it
    // The client did not ask: it never sees the usage chunk, but sees everything else.
    EXPECT_EQ(r.body.find("\"choices\":[]"), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find("\"prompt_tokens\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("data: [DONE]"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("tok0"), std::string::npos) << r.body;
    EXPECT_TRUE(spent_becomes("daily_tokens", 46)) << budget().dump();
}

TEST_F(BudgetTest, StreamWithIncludeUsageKeepsItsUsageChunkAcrossOneByteChunks) {
    start(config_with(daily_tokens));
    auto r = chat(chat_body("gpt-4o-mini", true, 50, true),
                  {{"x-mock-usage", "7,8"}, {"x-mock-one-byte", "1"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_NE(r.body.find("\"choices\":[]"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"total_tokens\":15"), std::string::npos) << r.body;
    EXPECT_TRUE(spent_becomes("daily_tokens", 15)) << budget().dump();
}

TEST_F(BudgetTest, AnthropicStreamIsChargedItsLastCumulativeUsage) {
    start(config_with(daily_tokens));
    json body = {{"model", "claude-3-5-haiku"},
                 {"max_tokens", 100},
                 {"stream", true},
                 {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
    auto r = post("/api/messages", body.dump(),
                  {{"x-mock-usage", "20,60,5,7"}, {"x-mock-usage-deltas", "3"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_NE(r.body.find("message_stop"), std::string::npos);
    // 20 input + 5 cache read + 7 cache write + 60 output: the deltas are not summed.
    EXPECT_TRUE(spent_becomes("daily_tokens", 92)) << budget().dump();
}

TEST_F(BudgetTest, ResponsesStreamAndEmbeddingsAreCharged) {
    start(config_with(daily_tokens));
    json responses = {{"model", "gpt-4o-mini"}, {"input", "hello"}, {"stream", true}};
    auto r = post("/api/responses", responses.dump(), {{"x-mock-usage", "11,22,4"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_NE(r.body.find("response.completed"), std::string::npos);
    EXPECT_TRUE(spent_becomes("daily_tokens", 33)) << budget().dump();
    // Responses' max field was added for the bound.
    EXPECT_TRUE(upstream.last_request()->max_output_tokens) << upstream.last_request()->body;

    json embeddings = {{"model", "text-embedding-3-small"}, {"input", "hello"}};
    r = post("/api/embeddings", embeddings.dump(), {{"x-mock-usage", "9,0"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_TRUE(spent_becomes("daily_tokens", 42)) << budget().dump();
}

TEST_F(BudgetTest, MoneyBudgetIsChargedAtTheModelsPrice) {
    start(config_with(R"({"name": "daily_usd", "algorithm": "fixed_window", "meter": "usd",
                          "limit": 5, "window": "day"})",
                      pricing));
    // 1000 input (200 of them cached) and 2000 output tokens of gpt-4o-mini:
    // 800 * 0.15 + 200 * 0.075 + 2000 * 0.60 per million = 0.001335 USD.
    auto r = chat(chat_body(), {{"x-mock-usage", "1000,2000,200"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.header("X-Budget-Unit"), "usd");
    EXPECT_EQ(r.header("X-Budget-Limit"), "5");
    EXPECT_TRUE(spent_becomes("daily_usd", 0.001335)) << budget().dump();
    EXPECT_EQ(stored_count("daily_usd"), 1335000);  // nano-USD, exact
    const auto usage = budget()["usage_today"]["models"]["gpt-4o-mini"];
    EXPECT_EQ(usage["requests"], 1) << usage.dump();
    EXPECT_EQ(usage["output"], 2000) << usage.dump();
}

TEST_F(BudgetTest, UnpricedModelUnderMoneyBudgetIsRefusedWithoutReachingTheUpstream) {
    start(config_with(R"({"name": "daily_usd", "algorithm": "fixed_window", "meter": "usd",
                          "limit": 5, "window": "day"})",
                      pricing));
    auto r = chat(chat_body("mystery-model"));
    ASSERT_EQ(r.status, 400u) << r.body;
    EXPECT_EQ(r.json()["error"]["code"], "model_not_priced") << r.body;
    EXPECT_NE(r.body.find("mystery-model"), std::string::npos);
    r = chat(json({{"messages", json::array()}}).dump());
    ASSERT_EQ(r.status, 400u) << r.body;
    EXPECT_EQ(r.json()["error"]["code"], "model_required") << r.body;
    r = chat("{not json");
    EXPECT_EQ(r.status, 400u) << r.body;
    EXPECT_EQ(upstream.request_count(), 0u);
    // A prefix entry prices a model family.
    json claude = {{"model", "claude-3-opus"},
                   {"max_tokens", 10},
                   {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
    EXPECT_EQ(post("/api/messages", claude.dump()).status, 200u);
}

TEST_F(BudgetTest, ModelScopedBudgetLeavesOtherModelsAlone) {
    start(config_with(R"({"name": "gpt4o_tokens", "algorithm": "fixed_window", "meter": "tokens",
                          "limit": 1000, "window": "day", "match": {"model": "gpt-4o*"}})"));
    auto other = chat(chat_body("o3-mini"), {{"x-mock-usage", "100,100"}});
    ASSERT_EQ(other.status, 200u) << other.body;
    EXPECT_FALSE(other.has_header("X-Budget-Limit")) << other.headers_text();
    auto mine = chat(chat_body("gpt-4o-mini"), {{"x-mock-usage", "100,100"}});
    ASSERT_EQ(mine.status, 200u) << mine.body;
    EXPECT_EQ(mine.header("X-Budget-Limit"), "1000");
    EXPECT_TRUE(spent_becomes("gpt4o_tokens", 200)) << budget().dump();
}

TEST_F(BudgetTest, SpentBudgetAnswersInsufficientQuotaThatSdksDoNotRetry) {
    start(config_with(R"({"name": "small", "algorithm": "fixed_window", "meter": "tokens",
                          "limit": 1000, "window": "day"})"));
    // 900 spent; the next reservation (the body's ~90 bytes + max_tokens 50) does not fit.
    ASSERT_EQ(chat(chat_body(), {{"x-mock-usage", "450,450"}}).status, 200u);
    ASSERT_TRUE(spent_becomes("small", 900)) << budget().dump();
    const auto before = upstream.request_count();
    auto r = chat(chat_body());
    ASSERT_EQ(r.status, 429u) << r.body;
    const auto body = r.json();
    EXPECT_EQ(body["error"]["code"], "insufficient_quota") << r.body;
    EXPECT_EQ(body["unit"], "tokens") << r.body;
    EXPECT_EQ(r.header("X-Should-Retry"), "false");
    EXPECT_EQ(r.header("X-Budget-Remaining"), "100");
    // Retry-After: when the day's window resets (midnight UTC).
    const auto retry = header_integer(r, "Retry-After");
    ASSERT_TRUE(retry);
    EXPECT_GT(*retry, 0);
    EXPECT_LE(*retry, 86400);
    EXPECT_EQ(upstream.request_count(), before);
    // A request that could never fit is told so (400), not to wait.
    r = chat(chat_body("gpt-4o-mini", false, 5000));
    EXPECT_EQ(r.status, 400u) << r.body;
    EXPECT_EQ(r.json()["error"]["code"], "request_exceeds_budget") << r.body;
}

TEST_F(BudgetTest, UpstreamErrorsChargeNothingAndReleaseTheHold) {
    start(config_with(daily_tokens));
    for (const char* status : {"500", "429", "400"}) {
        auto r = chat(chat_body(), {{"x-mock-status", status}});
        EXPECT_EQ(std::to_string(r.status), status) << r.body;
    }
    EXPECT_TRUE(spent_becomes("daily_tokens", 0)) << budget().dump();
    EXPECT_EQ(stored_count("daily_tokens"), 0);
}

TEST_F(BudgetTest, CutStreamIsChargedAnEstimateWithinItsReservationAndCounted) {
    start(config_with(daily_tokens));
    try_chat(chat_body("gpt-4o-mini", true, 50),
             {{"x-mock-cut", "before-usage"}, {"x-mock-usage", "40,45"}});
    ASSERT_TRUE(within(3s, [&] { return held("daily_tokens") == 0; })) << budget().dump();
    const double charged = spent("daily_tokens");
    EXPECT_GT(charged, 0);
    // At most the reservation: the body's bytes plus max_tokens.
    EXPECT_LE(charged, static_cast<double>(chat_body("gpt-4o-mini", true, 50).size()) + 50 + 60);
}

TEST_F(BudgetTest, ClientGoneMidStreamReleasesItsHold) {
    start(config_with(daily_tokens));
    {
        http_connection c(proxy->port(), 5s);
        const auto body = chat_body("gpt-4o-mini", true, 50);
        std::string raw =
            "POST /api/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
            "\r\nContent-Type: application/json\r\nx-mock-chunks: 50\r\n"
            "x-mock-chunk-delay-ms: 100\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body;
        c.send_raw(raw);
        ASSERT_TRUE(upstream.wait_for_arrivals(1, 3s));
        ASSERT_TRUE(within(2s, [&] { return held("daily_tokens") > 0; })) << budget().dump();
    }  // the client goes away mid-stream
    EXPECT_TRUE(within(5s, [&] { return held("daily_tokens") == 0; })) << budget().dump();
    EXPECT_LE(spent("daily_tokens"), 400);
}

TEST_F(BudgetTest, KilledProxysHoldExpiresAndIsReclaimed) {
    start(config_with(R"({"name": "tight", "algorithm": "fixed_window", "meter": "tokens",
                          "limit": 600, "window": "day"})",
                      R"(, "budget": {"hold_time_ms": 1500})"));
    const auto body = chat_body("gpt-4o-mini", true, 300);
    auto stream = std::async(std::launch::async, [&, port = proxy->port(), t = token] {
        try {
            return http_request(port, http::verb::post, "/api/chat/completions",
                                bearer(t, {{"x-mock-chunks", "100"},
                                           {"x-mock-chunk-delay-ms", "100"},
                                           {"Content-Type", "application/json"}}),
                                body, 20s)
                .status;
        } catch (const std::exception&) {
            return 0u;
        }
    });
    ASSERT_TRUE(upstream.wait_for_arrivals(1, 3s));
    ASSERT_TRUE(within(2s, [&] { return held("tight") > 0; })) << budget().dump();
    // The hold fills the budget: a second request is refused as held, retryable.
    auto refused = chat(body);
    EXPECT_EQ(refused.status, 429u) << refused.body;
    EXPECT_EQ(refused.json()["error"]["code"], "rate_limit_exceeded") << refused.body;
    EXPECT_EQ(refused.header("Retry-After"), "1");
    EXPECT_FALSE(refused.has_header("X-Should-Retry"));

    ::kill(proxy->pid(), SIGKILL);
    stream.wait();
    start_proxy({.base_path = "/v1",
                 .config = config_with(R"({"name": "tight", "algorithm": "fixed_window",
                                           "meter": "tokens", "limit": 600, "window": "day"})",
                                       R"(, "budget": {"hold_time_ms": 1500})")});
    // Nobody settles the dead instance's hold: it expires, and the next check reclaims it.
    EXPECT_TRUE(within(5s, [&] { return chat(body).status == 200; })) << budget().dump();
}

TEST_F(BudgetTest, TwoInstancesWithFiftyConcurrentRequestsNeverOverspend) {
    const auto config = config_with(R"({"name": "shared", "algorithm": "fixed_window",
                                        "meter": "tokens", "limit": 3000, "window": "day"})");
    start(config);
    proxy_process second(proxy_options_for({.base_path = "/v1", .config = config}));
    const auto body = chat_body("gpt-4o-mini", false, 60);
    std::vector<std::future<unsigned>> calls;
    for (int i = 0; i < 100; ++i) {
        const auto port = i % 2 ? second.port() : proxy->port();
        calls.push_back(std::async(std::launch::async, [&, port, t = token] {
            try {
                return http_request(port, http::verb::post, "/api/chat/completions",
                                    bearer(t, {{"x-mock-usage", "20,60"},
                                               {"x-mock-delay-ms", "150"},
                                               {"Content-Type", "application/json"}}),
                                    body, 20s)
                    .status;
            } catch (const std::exception&) {
                return 0u;
            }
        }));
    }
    int ok = 0, refused = 0;
    for (auto& c : calls) {
        const auto s = c.get();
        ok += s == 200;
        refused += s == 429;
    }
    EXPECT_EQ(ok + refused, 100);
    EXPECT_GT(ok, 0);
    EXPECT_GT(refused, 0);
    ASSERT_TRUE(within(5s, [&] { return held("shared") == 0; })) << budget().dump();
    // Every reservation was an upper bound: what was spent never passed the limit.
    EXPECT_EQ(spent("shared"), 80.0 * ok);
    EXPECT_LE(spent("shared"), 3000);
    EXPECT_EQ(upstream.request_count(), static_cast<std::size_t>(ok));
}

TEST_F(BudgetTest, ShortWindowBudgetComesBackAfterItsReset) {
    start(config_with(R"({"name": "brief", "algorithm": "fixed_window", "meter": "tokens",
                          "limit": 500, "window": 2})"));
    ASSERT_EQ(chat(chat_body(), {{"x-mock-usage", "200,200"}}).status, 200u);
    ASSERT_TRUE(within(3s, [&] { return chat(chat_body()).status == 429; }));
    EXPECT_TRUE(within(5s, [&] { return chat(chat_body()).status == 200; }));
}

TEST_F(BudgetTest, TokenBucketOfTokensPerMinuteGivesBackTheUnusedReservation) {
    // Per hour, so that refilling (0.56 tokens a second) does not blur what was charged.
    start(config_with(R"({"name": "tpm", "algorithm": "token_bucket", "meter": "tokens",
                          "limit": 2000, "window": "hour"})"));
    for (int i = 0; i < 5; ++i)
        ASSERT_EQ(chat(chat_body(), {{"x-mock-usage", "10,10"}}).status, 200u) << i;
    // Five requests used 100 tokens; their reservations (about 5 x 150) came back, the last
    // once its settle (sent after the response) has landed.
    double spent_now = 0;
    EXPECT_TRUE(within(3s, [&] {
        spent_now = spent("tpm");
        return spent_now <= 100.5;
    })) << spent_now;
    EXPECT_GE(spent_now, 95);
}

TEST_F(BudgetTest, MeteredEndingsAreCountedInMetrics) {
    const std::string admin_token = "adm_" + random_hex(20);
    const auto admin_port = free_port();
    start(config_with(daily_tokens),
          {{"ADMIN_BIND_ADDRESS", "127.0.0.1:" + std::to_string(admin_port)},
           {"ADMIN_TOKEN", admin_token}});
    ASSERT_EQ(chat(chat_body(), {{"x-mock-usage", "5,6"}}).status, 200u);
    chat(chat_body(), {{"x-mock-status", "500"}});
    try_chat(chat_body("gpt-4o-mini", true), {{"x-mock-cut", "mid-body"}});
    ASSERT_TRUE(spent_becomes("daily_tokens", spent("daily_tokens")));
    std::string text;
    ASSERT_TRUE(within(3s, [&] {
        text = http_get(admin_port, "/metrics", {{"Authorization", "Bearer " + admin_token}}).body;
        return contains(text, "ratelimit_proxy_metered_requests_total{charged=\"estimated\"} 1");
    })) << text;
    EXPECT_TRUE(contains(text, "ratelimit_proxy_metered_requests_total{charged=\"usage\"} 1"));
    EXPECT_TRUE(
        contains(text, "ratelimit_proxy_metered_requests_total{charged=\"upstream_error\"} 1"));
    EXPECT_TRUE(contains(text, "ratelimit_proxy_llm_tokens_total{kind=\"output\"}"));
    EXPECT_TRUE(contains(text, "ratelimit_proxy_budget_charged_total{policy=\"daily_tokens\""));
}

TEST_F(BudgetTest, GigabyteStreamFlowsThroughInConstantMemory) {
#ifdef RLP_SANITIZED
    // A sanitized proxy is many times slower, and its allocator keeps freed memory aside.
    const std::uint64_t total = 128u << 20;
#else
    const std::uint64_t total = 1u << 30;
#endif
    start(config_with(daily_tokens));
    const long before = proxy->vm_rss_kb();
    http_connection c(proxy->port(), 120s);
    const auto body = chat_body("gpt-4o-mini", true, 50);
    c.send_raw("POST /api/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
               "\r\nContent-Type: application/json\r\nx-mock-bytes: " + std::to_string(total) +
               "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    std::uint64_t received = 0;
    long peak = before;
    std::uint64_t next_probe = 0;
    auto r = c.read_response_streaming([&](std::string_view data) {
        received += data.size();
        if (received >= next_probe) {
            peak = std::max(peak, proxy->vm_rss_kb());
            next_probe += 64 << 20;
        }
    });
    EXPECT_EQ(r.status, 200u);
    EXPECT_GE(received, total);
#ifndef RLP_SANITIZED
    EXPECT_LT(peak - before, 16 * 1024) << "RSS grew from " << before << " to " << peak << " KiB";
#endif
    EXPECT_TRUE(within(3s, [&] { return held("daily_tokens") == 0; }));
}

TEST_F(BudgetTest, HostileBodiesGetA400AndTheProxyStaysUp) {
    start(config_with(daily_tokens));
    const std::string deep =
        R"({"model":"m","messages":)" + std::string(200000, '[') + std::string(200000, ']') + "}";
    const std::string bodies[] = {
        "",
        "[]",
        "\"just a string\"",
        R"({"model": 5, "messages": []})",
        R"({"model": "m", "max_tokens": -1, "messages": []})",
        R"({"model": "m", "max_tokens": 1e300, "messages": []})",
        R"({"model": "m", "max_tokens": "ten", "messages": []})",
        R"({"model": "m", "stream": "yes", "messages": []})",
        std::string(R"({"model": "m\xff\xfe", "messages": []})"),
        std::string(300000, '{'),
    };
    for (const auto& body : bodies) {
        const auto r = chat(body);
        EXPECT_EQ(r.status, 400u) << body.substr(0, 80) << " -> " << r.body;
        EXPECT_TRUE(r.json()["error"]["code"].is_string()) << r.body;
    }
    // Deep but valid: the proxy reads it without recursion, and it is not refused for depth.
    const auto r = chat(deep);
    EXPECT_NE(r.status, 0u);
    EXPECT_EQ(upstream.request_count(), r.status == 400 ? 0u : 1u);
    EXPECT_EQ(http_get(proxy->port(), "/health").status, 200u) << proxy->log();
    EXPECT_TRUE(spent_becomes("daily_tokens", spent("daily_tokens")));
}

TEST_F(BudgetTest, MeteredBodyOverItsLimitIs413AndExpectContinueIsAnswered) {
    start_proxy({.base_path = "/v1",
                 .config = config_with(daily_tokens, R"(, "budget": {"max_body_bytes": 2048})")});
    token = register_token(proxy->port());
    json big = {{"model", "gpt-4o-mini"},
                {"messages", {{{"role", "user"}, {"content", std::string(4000, 'x')}}}}};
    auto r = chat(big.dump());
    EXPECT_EQ(r.status, 413u) << r.body;
    EXPECT_NE(r.body.find("budget.max_body_bytes"), std::string::npos) << r.body;

    // A client that waits for 100 Continue gets it before the proxy reads the body.
    const auto body = chat_body();
    http_connection c(proxy->port(), 5s);
    c.send_raw("POST /api/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
               "\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n");
    const auto interim = c.read_response();
    EXPECT_EQ(interim.status, 100u);
    c.send_raw(body);
    const auto answer = c.read_response();
    EXPECT_EQ(answer.status, 200u) << answer.body;
    EXPECT_FALSE(upstream.last_request()->has_header("expect"));
    EXPECT_TRUE(spent_becomes("daily_tokens", 30)) << budget().dump();
}

TEST_F(BudgetTest, MemoryStoreKeepsBudgetsAndUsageInTheProcess) {
    start(config_with(daily_tokens), {{"STORE", "memory"}});
    ASSERT_EQ(chat(chat_body(), {{"x-mock-usage", "3,4"}}).status, 200u);
    EXPECT_TRUE(spent_becomes("daily_tokens", 7)) << budget().dump();
    const auto usage = budget()["usage_today"]["models"]["gpt-4o-mini"];
    EXPECT_EQ(usage["requests"], 1) << usage.dump();
    EXPECT_EQ(usage["input"], 3) << usage.dump();
    // Nothing of it in Redis.
    EXPECT_EQ(redis.command({"EXISTS", "{rlp}:rl:daily_tokens:" + token_id(token)}), "0");
}

TEST_F(BudgetTest, EncodedPathsAreMeteredAndOnlyPostsAre) {
    start(config_with(daily_tokens));
    // The mock routes the raw path (404, charged nothing); what counts is that the budget
    // applied: its hold was taken and given back.
    auto r = post("/api/chat/completion%73", chat_body(), {{"x-mock-usage", "2,3"}});
    EXPECT_EQ(r.header("X-Budget-Unit"), "tokens") << r.headers_text();
    EXPECT_LT(header_integer(r, "X-Budget-Remaining").value_or(100000), 100000);
    EXPECT_TRUE(spent_becomes("daily_tokens", 0)) << budget().dump();
    // GET .../chat/completions (stored completions) has no body to meter: relayed as it is.
    r = http_get(proxy->port(), "/api/chat/completions", bearer(token));
    EXPECT_NE(r.status, 400u) << r.body;
    EXPECT_FALSE(r.has_header("X-Budget-Unit"));
}

TEST_F(BudgetTest, ClientGoneBeforeTheAnswerIsChargedAnEstimateNotNothing) {
    start(config_with(daily_tokens));
    {
        http_connection c(proxy->port(), 5s);
        const auto body = chat_body();
        c.send_raw("POST /api/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                   token +
                   "\r\nContent-Type: application/json\r\nx-mock-delay-ms: 1500\r\n"
                   "Content-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body);
        ASSERT_TRUE(upstream.wait_for_arrivals(1, 3s));
    }  // the upstream has the request; the client leaves before its answer
    ASSERT_TRUE(within(5s, [&] { return held("daily_tokens") == 0; })) << budget().dump();
    EXPECT_GT(spent("daily_tokens"), 0) << budget().dump();
}

TEST_F(BudgetTest, OpenAiSdkStopsOnInsufficientQuota) {
    if (!sdk_available())
        GTEST_SKIP() << "the OpenAI Node SDK is not installed (scripts/test.sh runs npm ci)";
    start(config_with(R"({"name": "small", "algorithm": "fixed_window", "meter": "tokens",
                          "limit": 1000, "window": "day"})"));
    const auto base = "http://127.0.0.1:" + std::to_string(proxy->port()) + "/api";
    auto result = run_sdk_script("insufficient_quota.mjs", "quota", base, token,
                                 {{"PROXY_HEADERS", R"({"x-mock-usage": "300,300"})"}});
    ASSERT_EQ(result.exit_code, 0) << result.output << proxy->log();
    EXPECT_EQ(result.json["error_code"], "insufficient_quota") << result.output;
    EXPECT_EQ(result.json["attempts_for_failure"], 1) << result.output;
}

}  // namespace

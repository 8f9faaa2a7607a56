#include <gtest/gtest.h>

#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "mock_llm_upstream.hpp"
#include "sdk_runner.hpp"

namespace http = boost::beast::http;
using json = nlohmann::json;
using rlp_test::header_list;
using rlp_test::mock_dialect;
using rlp_test::mock_llm_upstream;
using rlp_test::mock_response_end;

namespace {

struct sse_event {
    std::string name;
    std::string data;
};

// The mock numbers its ids per request (chatcmpl-mock3): the same answer to another request.
std::string without_ids(const std::string& s) {
    return std::regex_replace(s, std::regex("mock[0-9]+"), "mockN");
}

// Splits an SSE body into its events (the mock writes one "data:" line per event).
std::vector<sse_event> parse_sse(const std::string& body) {
    std::vector<sse_event> events;
    std::size_t pos = 0;
    while (pos < body.size()) {
        auto end = body.find("\n\n", pos);
        if (end == std::string::npos)
            break;
        std::string block = body.substr(pos, end - pos);
        pos = end + 2;
        sse_event e;
        std::size_t line_start = 0;
        while (line_start <= block.size()) {
            auto nl = block.find('\n', line_start);
            std::string line = block.substr(line_start, nl - line_start);
            if (line.rfind("event: ", 0) == 0)
                e.name = line.substr(7);
            else if (line.rfind("data: ", 0) == 0)
                e.data = line.substr(6);
            if (nl == std::string::npos)
                break;
            line_start = nl + 1;
        }
        events.push_back(e);
    }
    return events;
}

class MockLlmUpstreamTest : public ::testing::Test {
  protected:
    rlp_test::http_response post(const std::string& path, const json& body,
                                 header_list headers = {}) {
        headers.emplace_back("Content-Type", "application/json");
        return rlp_test::http_request(mock_.port(), http::verb::post, path, headers, body.dump());
    }

    json chat_body(bool stream, std::optional<bool> include_usage = std::nullopt) {
        json b = {{"model", "gpt-4o-mini"},
                  {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                  {"max_tokens", 50}};
        if (stream)
            b["stream"] = true;
        if (include_usage)
            b["stream_options"] = {{"include_usage", *include_usage}};
        return b;
    }

    // Sends a request with Connection: close and returns every byte until the mock closes.
    std::string raw_exchange(const std::string& path, const json& body,
                             const header_list& headers) {
        rlp_test::http_connection c(mock_.port());
        std::string req = "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
        for (auto& [k, v] : headers)
            req += k + ": " + v + "\r\n";
        std::string payload = body.dump();
        req +=
            "Content-Type: application/json\r\nContent-Length: " + std::to_string(payload.size()) +
            "\r\n\r\n" + payload;
        c.send_raw(req);
        std::string got;
        EXPECT_TRUE(c.wait_for_close(std::chrono::seconds(10), &got));
        return got;
    }

    mock_llm_upstream mock_;
};

TEST_F(MockLlmUpstreamTest, ChatJsonReportsTheUsageItIsTold) {
    auto r = post("/v1/chat/completions", chat_body(false),
                  {{"x-mock-usage", "100,7,40"},
                   {"Authorization", "Bearer sk-upstream"},
                   {"Accept-Encoding", "identity"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json();
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["model"], "gpt-4o-mini");
    EXPECT_EQ(j["choices"][0]["message"]["content"], "tok0 tok1 tok2 ");
    EXPECT_EQ(j["usage"]["prompt_tokens"], 100);
    EXPECT_EQ(j["usage"]["completion_tokens"], 7);
    EXPECT_EQ(j["usage"]["total_tokens"], 107);
    EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 40);
    EXPECT_EQ(r.header("x-request-id"), "req_mock_1");
    EXPECT_EQ(r.header("x-ratelimit-limit-requests"), "10000");

    auto rec = mock_.last_request();
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->method, "POST");
    EXPECT_EQ(rec->path, "/v1/chat/completions");
    EXPECT_EQ(rec->dialect, mock_dialect::chat_completions);
    EXPECT_EQ(rec->header("authorization"), "Bearer sk-upstream");
    EXPECT_EQ(rec->header("accept-encoding"), "identity");
    EXPECT_EQ(rec->model, "gpt-4o-mini");
    EXPECT_FALSE(rec->stream);
    EXPECT_EQ(rec->max_tokens, 50);
    EXPECT_FALSE(rec->max_completion_tokens);
    EXPECT_TRUE(rec->stream_options.is_null());
    EXPECT_EQ(rec->json["messages"][0]["content"], "hi");
    // The client can read the answer before the mock has noted how it ended.
    ASSERT_TRUE(mock_.wait_for_requests(1, std::chrono::seconds(5)));
    rec = mock_.last_request();
    EXPECT_EQ(rec->status, 200u);
    EXPECT_EQ(rec->end, mock_response_end::complete);
    EXPECT_EQ(rec->response_body_bytes, r.body.size());
}

TEST_F(MockLlmUpstreamTest, ChatJsonUsesTheDefaultUsageWhenNotTold) {
    auto j = post("/chat/completions", chat_body(false)).json();
    EXPECT_EQ(j["usage"]["prompt_tokens"], 10);
    EXPECT_EQ(j["usage"]["completion_tokens"], 20);
    EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

TEST_F(MockLlmUpstreamTest, ChatStreamWithoutIncludeUsageHasNoUsageChunk) {
    auto r = post("/v1/chat/completions", chat_body(true), {{"x-mock-chunks", "4"}});
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("content-type"), "text/event-stream; charset=utf-8");
    EXPECT_EQ(r.header("transfer-encoding"), "chunked");
    auto events = parse_sse(r.body);
    ASSERT_EQ(events.size(), 1u + 4u + 1u + 1u);  // role, 4 contents, finish, [DONE]
    EXPECT_EQ(events.back().data, "[DONE]");
    std::string text;
    for (std::size_t i = 0; i + 1 < events.size(); ++i) {
        auto j = json::parse(events[i].data);
        EXPECT_EQ(j["object"], "chat.completion.chunk");
        EXPECT_FALSE(j.contains("usage")) << events[i].data;
        ASSERT_EQ(j["choices"].size(), 1u);
        text += j["choices"][0]["delta"].value("content", "");
    }
    EXPECT_EQ(text, "tok0 tok1 tok2 tok3 ");
    EXPECT_EQ(json::parse(events[events.size() - 2].data)["choices"][0]["finish_reason"], "stop");
    EXPECT_EQ(r.body.find("\"prompt_tokens\""), std::string::npos);
}

TEST_F(MockLlmUpstreamTest, ChatStreamWithIncludeUsageEndsWithAUsageChunk) {
    auto r = post("/v1/chat/completions", chat_body(true, true), {{"x-mock-usage", "33,44,5"}});
    ASSERT_EQ(r.status, 200u);
    auto events = parse_sse(r.body);
    ASSERT_GE(events.size(), 3u);
    EXPECT_EQ(events.back().data, "[DONE]");
    auto usage_chunk = json::parse(events[events.size() - 2].data);
    EXPECT_TRUE(usage_chunk["choices"].empty());
    EXPECT_EQ(usage_chunk["usage"]["prompt_tokens"], 33);
    EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], 44);
    EXPECT_EQ(usage_chunk["usage"]["total_tokens"], 77);
    EXPECT_EQ(usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    // As OpenAI does: every earlier chunk says "usage": null.
    for (std::size_t i = 0; i + 2 < events.size(); ++i)
        EXPECT_TRUE(json::parse(events[i].data)["usage"].is_null()) << events[i].data;

    auto rec = mock_.last_request();
    ASSERT_TRUE(rec);
    EXPECT_TRUE(rec->stream);
    EXPECT_TRUE(rec->include_usage);
    EXPECT_EQ(rec->stream_options, json({{"include_usage", true}}));
}

TEST_F(MockLlmUpstreamTest, ChatStreamWithIncludeUsageFalseHasNoUsageChunk) {
    auto r = post("/v1/chat/completions", chat_body(true, false));
    auto events = parse_sse(r.body);
    ASSERT_GE(events.size(), 2u);
    EXPECT_FALSE(json::parse(events[events.size() - 2].data)["choices"].empty());
    EXPECT_EQ(r.body.find("\"prompt_tokens\""), std::string::npos);
    EXPECT_FALSE(mock_.last_request()->include_usage);
}

TEST_F(MockLlmUpstreamTest, NoUsageHeaderSuppressesTheUsageChunkEvenWhenAsked) {
    auto r = post("/v1/chat/completions", chat_body(true, true), {{"x-mock-no-usage", "1"}});
    auto events = parse_sse(r.body);
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(events.back().data, "[DONE]");
    EXPECT_EQ(r.body.find("\"prompt_tokens\""), std::string::npos);
    auto j = post("/v1/chat/completions", chat_body(false), {{"x-mock-no-usage", "1"}}).json();
    EXPECT_FALSE(j.contains("usage"));
}

TEST_F(MockLlmUpstreamTest, ResponsesJsonCarriesInputAndOutputTokens) {
    json body = {{"model", "gpt-4.1"}, {"input", "hi"}, {"max_output_tokens", 64}};
    auto r = post("/v1/responses", body, {{"x-mock-usage", "12,34,6"}});
    ASSERT_EQ(r.status, 200u);
    auto j = r.json();
    EXPECT_EQ(j["object"], "response");
    EXPECT_EQ(j["model"], "gpt-4.1");
    EXPECT_EQ(j["output"][0]["content"][0]["text"], "tok0 tok1 tok2 ");
    EXPECT_EQ(j["usage"]["input_tokens"], 12);
    EXPECT_EQ(j["usage"]["output_tokens"], 34);
    EXPECT_EQ(j["usage"]["total_tokens"], 46);
    EXPECT_EQ(j["usage"]["input_tokens_details"]["cached_tokens"], 6);
    EXPECT_EQ(mock_.last_request()->max_output_tokens, 64);
    EXPECT_EQ(mock_.last_request()->dialect, mock_dialect::responses);
}

TEST_F(MockLlmUpstreamTest, ResponsesStreamEndsWithCompletedCarryingUsage) {
    json body = {{"model", "gpt-4.1"}, {"input", "hi"}, {"stream", true}};
    auto r = post("/v1/responses", body, {{"x-mock-usage", "12,34,6"}, {"x-mock-chunks", "2"}});
    auto events = parse_sse(r.body);
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[0].name, "response.created");
    EXPECT_TRUE(json::parse(events[0].data)["response"]["usage"].is_null());
    EXPECT_EQ(events[1].name, "response.output_text.delta");
    EXPECT_EQ(json::parse(events[1].data)["delta"], "tok0 ");
    EXPECT_EQ(events[2].name, "response.output_text.delta");
    EXPECT_EQ(events[3].name, "response.completed");
    auto done = json::parse(events[3].data);
    EXPECT_EQ(done["type"], "response.completed");
    EXPECT_EQ(done["response"]["status"], "completed");
    EXPECT_EQ(done["response"]["output"][0]["content"][0]["text"], "tok0 tok1 ");
    EXPECT_EQ(done["response"]["usage"]["input_tokens"], 12);
    EXPECT_EQ(done["response"]["usage"]["output_tokens"], 34);
    EXPECT_EQ(done["response"]["usage"]["input_tokens_details"]["cached_tokens"], 6);
}

TEST_F(MockLlmUpstreamTest, ResponsesStreamWithNoUsageCompletesWithNullUsage) {
    json body = {{"model", "gpt-4.1"}, {"input", "hi"}, {"stream", true}};
    auto events = parse_sse(post("/v1/responses", body, {{"x-mock-no-usage", "1"}}).body);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().name, "response.completed");
    EXPECT_TRUE(json::parse(events.back().data)["response"]["usage"].is_null());
}

TEST_F(MockLlmUpstreamTest, AnthropicJsonCountsCacheApartFromInput) {
    json body = {{"model", "claude-sonnet-4-5"},
                 {"max_tokens", 1024},
                 {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
    auto r = post("/v1/messages", body,
                  {{"x-mock-usage", "15,25,300,40"}, {"x-api-key", "sk-ant-upstream"}});
    ASSERT_EQ(r.status, 200u);
    auto j = r.json();
    EXPECT_EQ(j["type"], "message");
    EXPECT_EQ(j["model"], "claude-sonnet-4-5");
    EXPECT_EQ(j["content"][0]["text"], "tok0 tok1 tok2 ");
    EXPECT_EQ(j["usage"]["input_tokens"], 15);
    EXPECT_EQ(j["usage"]["output_tokens"], 25);
    EXPECT_EQ(j["usage"]["cache_read_input_tokens"], 300);
    EXPECT_EQ(j["usage"]["cache_creation_input_tokens"], 40);
    EXPECT_EQ(r.header("request-id"), "req_mock_1");
    EXPECT_FALSE(r.has_header("x-ratelimit-limit-requests"));
    auto rec = mock_.last_request();
    EXPECT_EQ(rec->dialect, mock_dialect::anthropic_messages);
    EXPECT_EQ(rec->max_tokens, 1024);
    EXPECT_EQ(rec->header("x-api-key"), "sk-ant-upstream");
}

TEST_F(MockLlmUpstreamTest, AnthropicStreamCarriesInputAtStartAndCumulativeOutputAtEnd) {
    json body = {{"model", "claude-sonnet-4-5"},
                 {"max_tokens", 1024},
                 {"stream", true},
                 {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
    auto r = post("/v1/messages", body, {{"x-mock-usage", "15,25,300,40"}});
    auto events = parse_sse(r.body);
    std::vector<std::string> names;
    for (auto& e : events)
        names.push_back(e.name);
    EXPECT_EQ(names, (std::vector<std::string>{"message_start", "content_block_start", "ping",
                                               "content_block_delta", "content_block_delta",
                                               "content_block_delta", "content_block_stop",
                                               "message_delta", "message_stop"}));
    ASSERT_EQ(events.size(), 9u);
    auto start = json::parse(events[0].data);
    EXPECT_EQ(start["message"]["usage"]["input_tokens"], 15);
    EXPECT_EQ(start["message"]["usage"]["output_tokens"], 1);
    EXPECT_EQ(start["message"]["usage"]["cache_read_input_tokens"], 300);
    EXPECT_EQ(start["message"]["usage"]["cache_creation_input_tokens"], 40);
    EXPECT_EQ(json::parse(events[3].data)["delta"]["text"], "tok0 ");
    EXPECT_EQ(json::parse(events[7].data)["usage"]["output_tokens"], 25);
}

TEST_F(MockLlmUpstreamTest, AnthropicUsageDeltasAreCumulative) {
    json body = {{"model", "claude-sonnet-4-5"}, {"max_tokens", 10}, {"stream", true}};
    auto events = parse_sse(
        post("/v1/messages", body, {{"x-mock-usage", "1,30"}, {"x-mock-usage-deltas", "3"}}).body);
    std::vector<int> outputs;
    for (auto& e : events)
        if (e.name == "message_delta")
            outputs.push_back(json::parse(e.data)["usage"]["output_tokens"].get<int>());
    EXPECT_EQ(outputs, (std::vector<int>{10, 20, 30}));
}

TEST_F(MockLlmUpstreamTest, EmbeddingsReportPromptAndTotalTokens) {
    json body = {{"model", "text-embedding-3-small"}, {"input", "hello"}};
    auto j = post("/v1/embeddings", body, {{"x-mock-usage", "8"}}).json();
    EXPECT_EQ(j["object"], "list");
    EXPECT_EQ(j["data"][0]["embedding"].size(), 3u);
    EXPECT_EQ(j["usage"]["prompt_tokens"], 8);
    EXPECT_EQ(j["usage"]["total_tokens"], 8);
    EXPECT_EQ(mock_.last_request()->dialect, mock_dialect::embeddings);
}

TEST_F(MockLlmUpstreamTest, HealthAnswersAndUnknownPathsAreNotFound) {
    auto h = rlp_test::http_get(mock_.port(), "/health");
    EXPECT_EQ(h.status, 200u);
    EXPECT_EQ(h.json()["status"], "ok");
    auto u = rlp_test::http_get(mock_.port(), "/v1/models");
    EXPECT_EQ(u.status, 404u);
    EXPECT_TRUE(u.json()["error"].contains("message"));
    auto g = rlp_test::http_get(mock_.port(), "/v1/chat/completions");
    EXPECT_EQ(g.status, 405u);
}

TEST_F(MockLlmUpstreamTest, RateLimitErrorIsRetryableOpenAiShape) {
    auto r = post("/v1/chat/completions", chat_body(true, true), {{"x-mock-status", "429"}});
    EXPECT_EQ(r.status, 429u);
    EXPECT_EQ(r.header("retry-after"), "1");
    EXPECT_FALSE(r.has_header("x-should-retry"));
    EXPECT_EQ(r.header("content-type"), "application/json");
    auto j = r.json();
    EXPECT_EQ(j["error"]["code"], "rate_limit_exceeded");
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_FALSE(j.contains("usage"));
    ASSERT_TRUE(mock_.wait_for_requests(1, std::chrono::seconds(5)));
    EXPECT_EQ(mock_.last_request()->status, 429u);
}

TEST_F(MockLlmUpstreamTest, QuotaErrorTellsSdksNotToRetry) {
    auto r = post("/v1/chat/completions", chat_body(false), {{"x-mock-status", "429q"}});
    EXPECT_EQ(r.status, 429u);
    EXPECT_EQ(r.header("x-should-retry"), "false");
    EXPECT_FALSE(r.has_header("retry-after"));
    auto j = r.json();
    EXPECT_EQ(j["error"]["code"], "insufficient_quota");
    EXPECT_EQ(j["error"]["type"], "insufficient_quota");
}

TEST_F(MockLlmUpstreamTest, ServerAndClientErrorsCarryTheDialectsShape) {
    auto five = post("/v1/responses", json{{"model", "m"}}, {{"x-mock-status", "500"}});
    EXPECT_EQ(five.status, 500u);
    EXPECT_EQ(five.json()["error"]["type"], "server_error");
    auto four = post("/v1/chat/completions", chat_body(false), {{"x-mock-status", "400"}});
    EXPECT_EQ(four.status, 400u);
    EXPECT_EQ(four.json()["error"]["type"], "invalid_request_error");
    auto ant = post("/v1/messages", json{{"model", "claude"}, {"stream", true}},
                    {{"x-mock-status", "429"}});
    EXPECT_EQ(ant.status, 429u);
    EXPECT_EQ(ant.header("retry-after"), "1");
    EXPECT_EQ(ant.json()["type"], "error");
    EXPECT_EQ(ant.json()["error"]["type"], "rate_limit_error");
    auto overloaded = post("/v1/messages", json{{"model", "claude"}}, {{"x-mock-status", "529"}});
    EXPECT_EQ(overloaded.json()["error"]["type"], "overloaded_error");
}

TEST_F(MockLlmUpstreamTest, CutAfterHeaderClosesBeforeAnyBody) {
    auto got = raw_exchange("/v1/chat/completions", chat_body(true, true),
                            {{"x-mock-cut", "after-header"}});
    auto head_end = got.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos) << got;
    EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u);
    EXPECT_EQ(got.size(), head_end + 4);
    ASSERT_TRUE(mock_.wait_for_requests(1, std::chrono::seconds(5)));
    EXPECT_EQ(mock_.last_request()->end, mock_response_end::cut);
}

TEST_F(MockLlmUpstreamTest, CutMidBodyStopsAStreamHalfway) {
    auto got = raw_exchange("/v1/chat/completions", chat_body(true, true),
                            {{"x-mock-cut", "mid-body"}, {"x-mock-chunks", "4"}});
    EXPECT_NE(got.find("tok1 "), std::string::npos);
    EXPECT_EQ(got.find("tok2 "), std::string::npos);
    EXPECT_EQ(got.find("[DONE]"), std::string::npos);
    EXPECT_EQ(got.find("\r\n0\r\n\r\n"), std::string::npos);  // no last chunk
    ASSERT_TRUE(mock_.wait_for_requests(1, std::chrono::seconds(5)));
    EXPECT_EQ(mock_.last_request()->end, mock_response_end::cut);
}

TEST_F(MockLlmUpstreamTest, CutMidBodySendsHalfAJsonBody) {
    auto got = raw_exchange("/v1/chat/completions", chat_body(false), {{"x-mock-cut", "mid-body"}});
    auto head_end = got.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos);
    auto cl = got.find("Content-Length: ");
    ASSERT_NE(cl, std::string::npos);
    auto announced = std::stoul(got.substr(cl + 16));
    EXPECT_EQ(got.size() - head_end - 4, announced / 2);
}

TEST_F(MockLlmUpstreamTest, CutBeforeUsageDropsOnlyTheUsage) {
    auto chat = raw_exchange("/v1/chat/completions", chat_body(true, true),
                             {{"x-mock-cut", "before-usage"}});
    EXPECT_NE(chat.find("\"finish_reason\":\"stop\""), std::string::npos);
    EXPECT_EQ(chat.find("\"prompt_tokens\""), std::string::npos);
    EXPECT_EQ(chat.find("[DONE]"), std::string::npos);

    json resp = {{"model", "gpt-4.1"}, {"input", "hi"}, {"stream", true}};
    auto responses = raw_exchange("/v1/responses", resp, {{"x-mock-cut", "before-usage"}});
    EXPECT_NE(responses.find("response.output_text.delta"), std::string::npos);
    EXPECT_EQ(responses.find("response.completed"), std::string::npos);

    json ant = {{"model", "claude"}, {"max_tokens", 5}, {"stream", true}};
    auto anthropic = raw_exchange("/v1/messages", ant, {{"x-mock-cut", "before-usage"}});
    EXPECT_NE(anthropic.find("content_block_stop"), std::string::npos);
    EXPECT_EQ(anthropic.find("message_delta"), std::string::npos);

    auto json_body =
        raw_exchange("/v1/chat/completions", chat_body(false), {{"x-mock-cut", "before-usage"}});
    EXPECT_NE(json_body.find("\"choices\""), std::string::npos);
    EXPECT_EQ(json_body.find("\"usage\""), std::string::npos);
}

TEST_F(MockLlmUpstreamTest, OneByteModeSendsEveryStreamByteInItsOwnChunk) {
    auto normal = post("/v1/chat/completions", chat_body(true, true)).body;
    auto got =
        raw_exchange("/v1/chat/completions", chat_body(true, true), {{"x-mock-one-byte", "1"}});
    auto head_end = got.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos);
    // Undo the chunked framing by hand: every chunk but the last must hold exactly one byte.
    std::string body;
    std::size_t pos = head_end + 4, chunks = 0;
    for (;;) {
        auto crlf = got.find("\r\n", pos);
        ASSERT_NE(crlf, std::string::npos);
        auto size = std::stoul(got.substr(pos, crlf - pos), nullptr, 16);
        if (size == 0)
            break;
        ASSERT_EQ(size, 1u) << "chunk " << chunks;
        body += got.substr(crlf + 2, 1);
        ++chunks;
        pos = crlf + 2 + 1 + 2;
    }
    EXPECT_EQ(without_ids(body), without_ids(normal));
    EXPECT_EQ(chunks, body.size());
    EXPECT_GT(chunks, 500u);
}

TEST_F(MockLlmUpstreamTest, OneByteModeJsonBodyIsIntact) {
    auto normal = post("/v1/messages", json{{"model", "claude"}, {"max_tokens", 5}}).body;
    rlp_test::http_connection c(mock_.port());
    json body = {{"model", "claude"}, {"max_tokens", 5}};
    c.send_raw("POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-mock-one-byte: 1\r\nContent-Length: " +
               std::to_string(body.dump().size()) + "\r\n\r\n" + body.dump());
    std::string got;
    auto r = c.read_response_streaming([&](std::string_view d) { got += d; });
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(without_ids(got), without_ids(normal));
    ASSERT_TRUE(mock_.wait_for_requests(2, std::chrono::seconds(5)));
    auto rec = mock_.last_request();
    EXPECT_EQ(rec->response_body_bytes, got.size());
    EXPECT_EQ(rec->response_body_writes, got.size());
}

TEST_F(MockLlmUpstreamTest, BytesModeStreamsAboutThatManyBytes) {
    const std::uint64_t n = 8 * 1024 * 1024;
    rlp_test::http_connection c(mock_.port());
    std::string payload = chat_body(true, true).dump();
    c.send_raw(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-bytes: " + std::to_string(n) +
        "\r\nContent-Length: " + std::to_string(payload.size()) + "\r\n\r\n" + payload);
    std::uint64_t total = 0;
    std::string tail;
    auto r = c.read_response_streaming([&](std::string_view d) {
        total += d.size();
        tail.append(d);
        if (tail.size() > 4096)
            tail.erase(0, tail.size() - 4096);
    });
    EXPECT_EQ(r.status, 200u);
    EXPECT_GE(total, n);
    EXPECT_LT(total, n + n / 10);
    EXPECT_NE(tail.find("\"completion_tokens\":20"), std::string::npos);
    EXPECT_EQ(tail.substr(tail.size() - 14), "data: [DONE]\n\n");
    ASSERT_TRUE(mock_.wait_for_requests(1, std::chrono::seconds(5)));
    EXPECT_EQ(mock_.last_request()->response_body_bytes, total);
}

TEST_F(MockLlmUpstreamTest, BytesModeJsonAndResponsesStreamsStayValid) {
    auto j = post("/v1/chat/completions", chat_body(false), {{"x-mock-bytes", "100000"}}).json();
    EXPECT_EQ(j["choices"][0]["message"]["content"].get<std::string>().size(), 100000u);
    json body = {{"model", "gpt-4.1"}, {"input", "hi"}, {"stream", true}};
    auto events = parse_sse(post("/v1/responses", body, {{"x-mock-bytes", "100000"}}).body);
    ASSERT_FALSE(events.empty());
    std::size_t deltas = 0;
    for (auto& e : events)
        if (e.name == "response.output_text.delta")
            deltas += json::parse(e.data)["delta"].get<std::string>().size();
    EXPECT_EQ(deltas, 50000u);
    auto done = json::parse(events.back().data);
    EXPECT_EQ(done["response"]["output"][0]["content"][0]["text"].get<std::string>().size(),
              50000u);
    EXPECT_EQ(done["response"]["usage"]["output_tokens"], 20);
}

TEST_F(MockLlmUpstreamTest, DelaysHoldTheHeaderAndSpaceTheEvents) {
    auto t0 = std::chrono::steady_clock::now();
    post("/v1/chat/completions", chat_body(false), {{"x-mock-delay-ms", "300"}});
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));

    rlp_test::http_connection c(mock_.port());
    std::string payload = chat_body(true).dump();
    c.send_raw(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-chunk-delay-ms: 150\r\n"
        "x-mock-chunks: 2\r\nContent-Length: " +
        std::to_string(payload.size()) + "\r\n\r\n" + payload);
    std::vector<std::chrono::steady_clock::time_point> arrivals;
    c.read_response_streaming(
        [&](std::string_view) { arrivals.push_back(std::chrono::steady_clock::now()); });
    // 5 events (role, 2 contents, finish, [DONE]): 4 pauses of 150 ms.
    ASSERT_GE(arrivals.size(), 2u);
    EXPECT_GE(arrivals.back() - arrivals.front(), std::chrono::milliseconds(550));
}

TEST_F(MockLlmUpstreamTest, KeepsTheConnectionAliveAcrossRequests) {
    rlp_test::http_connection c(mock_.port());
    for (int i = 0; i < 3; ++i) {
        auto r =
            c.request(http::verb::post, "/v1/chat/completions",
                      {{"Content-Type", "application/json"}}, chat_body(i % 2 == 1, true).dump());
        EXPECT_EQ(r.status, 200u);
        EXPECT_TRUE(r.keep_alive);
    }
    EXPECT_EQ(mock_.connection_count(), 1u);
    EXPECT_EQ(mock_.request_count(), 3u);
}

TEST_F(MockLlmUpstreamTest, RecordsConcurrentRequests) {
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&, i] {
            auto r = post("/v1/chat/completions", chat_body(true, true),
                          {{"x-mock-chunk-delay-ms", "10"}, {"x-client", std::to_string(i)}});
            if (r.status == 200)
                ++ok;
        });
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(ok.load(), 8);
    ASSERT_TRUE(mock_.wait_for_requests(8, std::chrono::seconds(5)));
    auto recs = mock_.requests();
    ASSERT_EQ(recs.size(), 8u);
    std::set<std::string> clients;
    for (auto& r : recs) {
        clients.insert(r.header("x-client"));
        EXPECT_EQ(r.end, mock_response_end::complete);
    }
    EXPECT_EQ(clients.size(), 8u);
}

TEST_F(MockLlmUpstreamTest, DefaultHeadersApplyUnlessTheRequestSaysOtherwise) {
    mock_.set_default_headers({{"x-mock-usage", "1,2"}, {"x-mock-status", "429q"}});
    auto refused = post("/v1/chat/completions", chat_body(false));
    EXPECT_EQ(refused.status, 429u);
    auto j = post("/v1/chat/completions", chat_body(false), {{"x-mock-status", "200"}}).json();
    EXPECT_EQ(j["usage"]["prompt_tokens"], 1);
    EXPECT_EQ(j["usage"]["completion_tokens"], 2);
}

TEST_F(MockLlmUpstreamTest, PeerClosingMidStreamIsRecorded) {
    {
        rlp_test::http_connection c(mock_.port());
        std::string payload = chat_body(true).dump();
        c.send_raw(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-bytes: 1073741824\r\n"
            "Content-Length: " +
            std::to_string(payload.size()) + "\r\n\r\n" + payload);
        ASSERT_TRUE(mock_.wait_for_arrivals(1, std::chrono::seconds(5)));
    }  // closed with most of the gigabyte unsent
    ASSERT_TRUE(mock_.wait_for_requests(1, std::chrono::seconds(10)));
    auto rec = mock_.last_request();
    EXPECT_EQ(rec->end, mock_response_end::peer_gone);
    EXPECT_LT(rec->response_body_bytes, 1073741824u);
}

// The SDK script of tests/sdk pointed at the mock itself: what the official OpenAI SDK does
// with the two 429 answers (the proxy's own are checked in budget_sdk_test).
TEST_F(MockLlmUpstreamTest, OpenAiSdkTakesQuotaRefusalAsFinal) {
    if (!rlp_test::sdk_available())
        GTEST_SKIP() << "node or tests/sdk/node_modules/openai missing (npm ci in tests/sdk)";
    mock_.set_default_headers({{"x-mock-status", "429q"}});
    auto r = rlp_test::run_sdk_script("insufficient_quota.mjs", "quota", mock_.url("/v1"),
                                      "rlp_sdk_token");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.json["ok"], 0);
    EXPECT_EQ(r.json["error_status"], 429);
    EXPECT_EQ(r.json["error_code"], "insufficient_quota");
    EXPECT_EQ(r.json["attempts_for_failure"], 1);
    EXPECT_EQ(mock_.request_count(), 1u);
    auto rec = mock_.last_request();
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->path, "/v1/chat/completions");
    EXPECT_EQ(rec->header("authorization"), "Bearer rlp_sdk_token");
    EXPECT_EQ(rec->model, "gpt-4o-mini");
    EXPECT_EQ(rec->max_tokens, 50);
}

TEST_F(MockLlmUpstreamTest, OpenAiSdkRetriesRateLimitRefusal) {
    if (!rlp_test::sdk_available())
        GTEST_SKIP() << "node or tests/sdk/node_modules/openai missing (npm ci in tests/sdk)";
    mock_.set_default_headers({{"x-mock-status", "429"}});
    auto r = rlp_test::run_sdk_script("insufficient_quota.mjs", "rate", mock_.url("/v1"),
                                      "rlp_sdk_token");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.json["error_code"], "rate_limit_exceeded");
    EXPECT_EQ(r.json["attempts_for_failure"], 3);  // maxRetries 2
    EXPECT_EQ(mock_.request_count(), 3u);

    // The quota check refuses to pass on a retryable refusal: the SDK retried it.
    auto q = rlp_test::run_sdk_script("insufficient_quota.mjs", "quota", mock_.url("/v1"),
                                      "rlp_sdk_token");
    EXPECT_EQ(q.exit_code, 1) << q.output;
    EXPECT_EQ(q.json["attempts_for_failure"], 3);
}

}  // namespace

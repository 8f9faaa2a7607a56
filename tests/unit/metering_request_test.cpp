// What a metered request's body says about its cost (read_request), and the fields the proxy
// adds to it (prepare_request): inserted as text when absent, the rest of the body untouched.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "ratelimit_proxy/metering/request_info.hpp"

namespace metering = ratelimit_proxy::metering;
using metering::dialect;

namespace {

metering::request_info read_ok(dialect d, const std::string& body) {
    std::string error;
    const auto info = metering::read_request(d, body, error);
    EXPECT_TRUE(info.has_value()) << error << "\n" << body;
    EXPECT_TRUE(info || !error.empty());
    return info.value_or(metering::request_info{});
}

std::string read_error(dialect d, const std::string& body) {
    std::string error;
    const auto info = metering::read_request(d, body, error);
    EXPECT_FALSE(info.has_value()) << body;
    return error;
}

// A chat completions request as the OpenAI docs show one, with two images by URL.
const std::string chat_vision = R"({
  "model": "gpt-4o-mini",
  "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": [
      {"type": "text", "text": "What is in these images?"},
      {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/a.jpg", "detail": "high"}},
      {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/b.jpg"}}
    ]}
  ],
  "max_tokens": 300,
  "max_completion_tokens": 500,
  "stream": true,
  "stream_options": {"include_usage": true}
})";

}  // namespace

TEST(MeteringRequestTest, ChatRequestGivesModelStreamUsageRequestAndTheSmallestMax) {
    const auto info = read_ok(dialect::chat_completions, chat_vision);
    EXPECT_EQ(info.kind, dialect::chat_completions);
    EXPECT_EQ(info.model, "gpt-4o-mini");
    EXPECT_TRUE(info.stream);
    EXPECT_TRUE(info.client_asked_usage);
    EXPECT_EQ(info.max_output, 300);
    EXPECT_EQ(info.input_bound,
              static_cast<std::int64_t>(chat_vision.size()) + 2 * metering::image_token_allowance);
    EXPECT_TRUE(info.has_stream_options);
    EXPECT_TRUE(info.has_own_max_field);
    EXPECT_FALSE(metering::hides_usage_chunk(info));
    EXPECT_EQ(metering::output_bound(info, 4096), 300);
}

TEST(MeteringRequestTest, ResponsesRequestCountsInputImagesAndReadsMaxOutputTokens) {
    const std::string body = R"({"model":"gpt-4.1","input":[{"role":"user","content":[
        {"type":"input_text","text":"what's in this image?"},
        {"type":"input_image","image_url":"https://example.com/cat.png"}]}],
        "max_output_tokens":1024,"max_tokens":5,"stream":false})";
    const auto info = read_ok(dialect::responses, body);
    EXPECT_EQ(info.model, "gpt-4.1");
    EXPECT_FALSE(info.stream);
    EXPECT_EQ(info.max_output, 1024);  // max_tokens is not a Responses field
    EXPECT_EQ(info.input_bound, static_cast<std::int64_t>(body.size()) + 2000);
    // A plain string input has no image.
    const std::string text = R"({"model":"gpt-4.1","input":"Tell me a three sentence story."})";
    const auto plain = read_ok(dialect::responses, text);
    EXPECT_EQ(plain.input_bound, static_cast<std::int64_t>(text.size()));
    EXPECT_EQ(plain.max_output, std::nullopt);
    EXPECT_EQ(metering::output_bound(plain, 4096), 4096);
}

TEST(MeteringRequestTest, MessagesRequestCountsImagesNestedInToolResults) {
    const std::string body = R"({"model":"claude-sonnet-4-20250514","max_tokens":1024,
      "system":"Be brief.","stream":true,
      "messages":[
        {"role":"user","content":[
          {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/4AAQ"}},
          {"type":"image","source":{"type":"url","url":"https://example.com/ant.jpg"}},
          {"type":"text","text":"Describe these. The word \"image\" here is text."}]},
        {"role":"assistant","content":[{"type":"tool_use","id":"toolu_01","name":"shot","input":{}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":[
          {"type":"image","source":{"type":"url","url":"https://example.com/shot.png"}}]}]}]})";
    const auto info = read_ok(dialect::messages, body);
    EXPECT_TRUE(info.stream);
    EXPECT_EQ(info.max_output, 1024);
    EXPECT_EQ(info.input_bound, static_cast<std::int64_t>(body.size()) + 3 * 2000);
    EXPECT_FALSE(metering::hides_usage_chunk(info));  // only chat completions hide a chunk
}

TEST(MeteringRequestTest, EmbeddingsRequestHasNoMaxAndItsBytesBoundItsInput) {
    const std::string body =
        R"({"input":["The food was delicious and the waiter..."],"model":"text-embedding-3-small","encoding_format":"float"})";
    const auto info = read_ok(dialect::embeddings, body);
    EXPECT_EQ(info.model, "text-embedding-3-small");
    EXPECT_EQ(info.max_output, std::nullopt);
    EXPECT_EQ(info.input_bound, static_cast<std::int64_t>(body.size()));
    std::string prepared = body;
    EXPECT_FALSE(metering::prepare_request(info, prepared, 4096));
    EXPECT_EQ(prepared, body);
}

TEST(MeteringRequestTest, BodiesThatAreNotJsonObjectsAreRefusedWithAReason) {
    EXPECT_EQ(read_error(dialect::chat_completions, R"(["model","gpt-4o"])"),
              "request body is not a JSON object");
    EXPECT_EQ(read_error(dialect::chat_completions, "42"), "request body is not a JSON object");
    EXPECT_EQ(read_error(dialect::messages, R"({"model":"claude")"),
              "request body is not valid JSON");
    EXPECT_EQ(read_error(dialect::responses, ""), "request body is not valid JSON");
}

TEST(MeteringRequestTest, MaxTokensThatAreNotNonNegativeIntegersNameTheField) {
    EXPECT_EQ(read_error(dialect::chat_completions, R"({"model":"m","max_tokens":-1})"),
              "\"max_tokens\" must be an integer from 0 to 1000000000");
    EXPECT_EQ(read_error(dialect::chat_completions, R"({"model":"m","max_completion_tokens":1.5})"),
              "\"max_completion_tokens\" must be an integer from 0 to 1000000000");
    EXPECT_EQ(read_error(dialect::responses, R"({"model":"m","max_output_tokens":"100"})"),
              "\"max_output_tokens\" must be an integer from 0 to 1000000000");
    EXPECT_EQ(read_error(dialect::messages, R"({"model":"m","max_tokens":18446744073709551615})"),
              "\"max_tokens\" must be an integer from 0 to 1000000000");
    EXPECT_EQ(read_error(dialect::messages, R"({"model":"m","max_tokens":[1]})"),
              "\"max_tokens\" must be an integer from 0 to 1000000000");
    EXPECT_EQ(read_ok(dialect::messages, R"({"model":"m","max_tokens":0})").max_output, 0);
    // A bound beyond any model would only overflow the reservation.
    EXPECT_EQ(read_error(dialect::messages, R"({"model":"m","max_tokens":1000000001})"),
              "\"max_tokens\" must be an integer from 0 to 1000000000");
}

TEST(MeteringRequestTest, SeveralChoicesMultiplyTheOutputBound) {
    const auto info =
        read_ok(dialect::chat_completions, R"({"model":"m","n":3,"max_completion_tokens":100})");
    EXPECT_EQ(metering::output_bound(info, 4096), 300);
    EXPECT_EQ(
        metering::output_bound(read_ok(dialect::chat_completions, R"({"model":"m","n":2})"), 50),
        100);
    EXPECT_EQ(read_error(dialect::chat_completions, R"({"model":"m","n":0})"),
              "\"n\" must be an integer from 1 to 128");
    EXPECT_EQ(read_error(dialect::chat_completions, R"({"model":"m","n":"2"})"),
              "\"n\" must be an integer from 1 to 128");
}

TEST(MeteringRequestTest, DialectIsKnownFromThePathAsTheUpstreamRoutesIt) {
    EXPECT_EQ(metering::dialect_of("/api/v1/chat/completions"), dialect::chat_completions);
    EXPECT_EQ(metering::dialect_of("/api/v1/chat/completion%73"), dialect::chat_completions);
    EXPECT_EQ(metering::dialect_of("/api/v1/chat%2Fcompletions"), dialect::chat_completions);
    EXPECT_EQ(metering::dialect_of("/api/v1/chat//completions/"), dialect::chat_completions);
    EXPECT_EQ(metering::dialect_of("/api/v1/messages"), dialect::messages);
    EXPECT_EQ(metering::dialect_of("/api/v1/responses"), dialect::responses);
    EXPECT_EQ(metering::dialect_of("/api/v1/embeddings"), dialect::embeddings);
    EXPECT_EQ(metering::dialect_of("/api/v1/models"), dialect::none);
    EXPECT_EQ(metering::dialect_of("/api/v1/mychat/completions"), dialect::none);
    EXPECT_EQ(metering::dialect_of("/api/v1/chat/completions%"), dialect::none);
}

TEST(MeteringRequestTest, FieldsOfTheWrongTypeAreRefusedAndNullsAreAbsent) {
    EXPECT_EQ(read_error(dialect::chat_completions, R"({"model":5})"),
              "\"model\" must be a string");
    EXPECT_EQ(read_error(dialect::chat_completions, R"({"model":"m","stream":"yes"})"),
              "\"stream\" must be a boolean");
    EXPECT_EQ(read_error(dialect::chat_completions, R"({"model":"m","stream_options":true})"),
              "\"stream_options\" must be an object");
    EXPECT_EQ(read_error(dialect::chat_completions,
                         R"({"model":"m","stream_options":{"include_usage":1}})"),
              "\"stream_options.include_usage\" must be a boolean");
    const auto info =
        read_ok(dialect::chat_completions,
                R"({"model":null,"stream":null,"max_tokens":null,"stream_options":null})");
    EXPECT_EQ(info.model, "");
    EXPECT_FALSE(info.stream);
    EXPECT_EQ(info.max_output, std::nullopt);
    EXPECT_TRUE(info.has_stream_options);
    EXPECT_FALSE(info.has_own_max_field);
}

TEST(MeteringRequestTest, AbsentFieldsAreInsertedAsTextLeavingEveryOtherByte) {
    // Odd spacing, escapes and number forms a re-serialisation would change.
    const std::string rest =
        " \n  \"model\" : \"gpt-4o\" ,\"stream\":true, \"temperature\": 1.0e0,"
        " \"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \\\"ok\\\"\"}] }";
    const std::string body = "{" + rest;
    const auto info = read_ok(dialect::chat_completions, body);
    EXPECT_TRUE(metering::hides_usage_chunk(info));
    std::string prepared = body;
    EXPECT_TRUE(metering::prepare_request(info, prepared, 4096));
    EXPECT_EQ(
        prepared,
        "{\"stream_options\":{\"include_usage\":true},\"max_completion_tokens\":4096," + rest);
    const auto parsed = nlohmann::json::parse(prepared);
    EXPECT_EQ(parsed["stream_options"]["include_usage"], true);
    EXPECT_EQ(parsed["max_completion_tokens"], 4096);

    // Leading whitespace before the object; only the max for a non-streaming request.
    const std::string plain = "\r\n {\"model\":\"gpt-4o\",\"messages\":[]}";
    std::string prepared_plain = plain;
    EXPECT_TRUE(
        metering::prepare_request(read_ok(dialect::chat_completions, plain), prepared_plain, 100));
    EXPECT_EQ(prepared_plain,
              "\r\n {\"max_completion_tokens\":100,\"model\":\"gpt-4o\",\"messages\":[]}");
}

TEST(MeteringRequestTest, EachDialectGetsItsOwnMaxFieldAndAnEmptyObjectStaysValid) {
    std::string messages = "{}";
    EXPECT_TRUE(metering::prepare_request(read_ok(dialect::messages, messages), messages, 8192));
    EXPECT_EQ(messages, R"({"max_tokens":8192})");
    std::string responses = R"({ "model":"o3", "input":"hi" })";
    EXPECT_TRUE(metering::prepare_request(read_ok(dialect::responses, responses), responses, 77));
    EXPECT_EQ(responses, R"({"max_output_tokens":77, "model":"o3", "input":"hi" })");
    std::string stream_only = R"({ })";
    auto info = read_ok(dialect::chat_completions, R"({"stream":true})");
    info.max_output = 10;
    EXPECT_TRUE(metering::prepare_request(info, stream_only, 5));
    EXPECT_EQ(stream_only, R"({"stream_options":{"include_usage":true} })");
}

TEST(MeteringRequestTest, NothingChangesWhenTheClientSetEverything) {
    std::string body = chat_vision;
    EXPECT_FALSE(metering::prepare_request(read_ok(dialect::chat_completions, body), body, 4096));
    EXPECT_EQ(body, chat_vision);
    // max_tokens alone is a max: max_completion_tokens is not added beside it.
    const std::string chat = R"({"model":"m","max_tokens":64})";
    body = chat;
    EXPECT_FALSE(metering::prepare_request(read_ok(dialect::chat_completions, body), body, 4096));
    EXPECT_EQ(body, chat);
}

TEST(MeteringRequestTest, ExistingStreamOptionsAreMergedKeepingKeyOrder) {
    const std::string body =
        R"({"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false},"max_tokens":5,"n":1})";
    const auto info = read_ok(dialect::chat_completions, body);
    EXPECT_TRUE(metering::hides_usage_chunk(info));
    std::string prepared = body;
    EXPECT_TRUE(metering::prepare_request(info, prepared, 4096));
    EXPECT_EQ(
        prepared,
        R"({"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true},"max_tokens":5,"n":1})");

    // include_usage false: the client did not ask, so it is set and the chunk hidden.
    const std::string declined =
        R"({"stream_options":{"include_usage":false},"model":"gpt-4o","stream":true})";
    const auto declined_info = read_ok(dialect::chat_completions, declined);
    EXPECT_FALSE(declined_info.client_asked_usage);
    EXPECT_TRUE(metering::hides_usage_chunk(declined_info));
    prepared = declined;
    EXPECT_TRUE(metering::prepare_request(declined_info, prepared, 256));
    EXPECT_EQ(
        prepared,
        R"({"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"max_completion_tokens":256})");

    // null stream_options and a null own max field are replaced, not duplicated.
    const std::string nulls =
        R"({"model":"gpt-4o","stream":true,"stream_options":null,"max_completion_tokens":null})";
    prepared = nulls;
    EXPECT_TRUE(metering::prepare_request(read_ok(dialect::chat_completions, nulls), prepared, 9));
    EXPECT_EQ(
        prepared,
        R"({"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":9})");
}

TEST(MeteringRequestTest, StreamOptionsAreLeftAloneWithoutStreaming) {
    const std::string body = R"({"model":"gpt-4o","stream":false,"max_tokens":3})";
    const auto info = read_ok(dialect::chat_completions, body);
    EXPECT_FALSE(metering::hides_usage_chunk(info));
    std::string prepared = body;
    EXPECT_FALSE(metering::prepare_request(info, prepared, 4096));
    EXPECT_EQ(prepared, body);
}

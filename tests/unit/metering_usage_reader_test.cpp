// The usage reader on response bodies shaped as OpenAI and Anthropic send them: each fed whole,
// one byte at a time and in random pieces must give the same usage and the same output; hiding
// drops exactly the usage-only chunk event; memory stays bounded whatever the stream's length.
#include <gtest/gtest.h>

#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "ratelimit_proxy/metering/usage_reader.hpp"

namespace metering = ratelimit_proxy::metering;
using metering::dialect;

namespace {

struct read_result {
    std::string out;
    metering::usage usage;
    bool complete = false;
    std::size_t max_held = 0;
};

// Feeds `body` in pieces ending at `cuts` (ascending), then finishes.
read_result read_pieces(dialect d, bool event_stream, bool hide, std::string_view body,
                        const std::vector<std::size_t>& cuts) {
    metering::usage_reader reader(d, event_stream, hide);
    read_result r;
    std::size_t at = 0;
    for (std::size_t cut : cuts) {
        reader.feed(body.substr(at, cut - at), r.out);
        r.max_held = std::max(r.max_held, reader.held_bytes());
        at = cut;
    }
    reader.feed(body.substr(at), r.out);
    reader.finish(r.out);
    EXPECT_EQ(reader.held_bytes(), 0u);
    r.usage = reader.result();
    r.complete = reader.complete();
    return r;
}

std::vector<std::size_t> every_byte(std::size_t n) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < n; ++i)
        cuts.push_back(i);
    return cuts;
}

std::vector<std::size_t> random_cuts(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::size_t> cuts;
    std::size_t at = 0;
    while (n > 0) {
        at += std::uniform_int_distribution<std::size_t>(1, 40)(rng);
        if (at >= n)
            break;
        cuts.push_back(at);
    }
    return cuts;
}

// Reads `body` whole, byte by byte and in random pieces; all must agree. Returns the whole read.
read_result read_every_way(dialect d, bool event_stream, bool hide, std::string_view body) {
    const read_result whole = read_pieces(d, event_stream, hide, body, {});
    std::vector<std::vector<std::size_t>> ways{every_byte(body.size())};
    for (unsigned seed = 1; seed <= 20; ++seed)
        ways.push_back(random_cuts(body.size(), seed));
    for (std::size_t i = 0; i < ways.size(); ++i) {
        const read_result r = read_pieces(d, event_stream, hide, body, ways[i]);
        EXPECT_EQ(r.out, whole.out) << "way " << i;
        EXPECT_EQ(r.usage.input, whole.usage.input) << "way " << i;
        EXPECT_EQ(r.usage.cached_input, whole.usage.cached_input) << "way " << i;
        EXPECT_EQ(r.usage.cache_write, whole.usage.cache_write) << "way " << i;
        EXPECT_EQ(r.usage.output, whole.usage.output) << "way " << i;
        EXPECT_EQ(r.usage.seen, whole.usage.seen) << "way " << i;
        EXPECT_EQ(r.complete, whole.complete) << "way " << i;
        EXPECT_LE(r.max_held, metering::usage_reader::max_held_event);
    }
    return whole;
}

void expect_usage(const metering::usage& u, std::int64_t input, std::int64_t cached,
                  std::int64_t cache_write, std::int64_t output) {
    EXPECT_TRUE(u.seen);
    EXPECT_EQ(u.input, input);
    EXPECT_EQ(u.cached_input, cached);
    EXPECT_EQ(u.cache_write, cache_write);
    EXPECT_EQ(u.output, output);
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
    for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
    return s;
}

// A chat completions stream with stream_options.include_usage (OpenAI's documented shape):
// every chunk has "usage": null, then the usage-only chunk with empty choices, then [DONE].
const std::string chat_head =
    R"(data: {"id":"chatcmpl-AyPNinnUqUDYo9SAdA52NobMflmj2","object":"chat.completion.chunk","created":1738960610,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AyPNinnUqUDYo9SAdA52NobMflmj2","object":"chat.completion.chunk","created":1738960610,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":"The \"usage\":{\"prompt_tokens\":999} field, a \\ and {[ in text"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AyPNinnUqUDYo9SAdA52NobMflmj2","object":"chat.completion.chunk","created":1738960610,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

)";
const std::string chat_usage_event =
    R"(data: {"id":"chatcmpl-AyPNinnUqUDYo9SAdA52NobMflmj2","object":"chat.completion.chunk","created":1738960610,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[],"usage":{"prompt_tokens":1200,"completion_tokens":42,"total_tokens":1242,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":10,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

)";
const std::string chat_tail = "data: [DONE]\n\n";
const std::string chat_stream = chat_head + chat_usage_event + chat_tail;

// The Responses API's streaming events; usage only in response.completed's response.
const std::string responses_stream =
    R"(event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654","object":"response","created_at":1741290958,"status":"in_progress","error":null,"incomplete_details":null,"instructions":"You are a helpful assistant.","max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654","object":"response","created_at":1741290958,"status":"in_progress","error":null,"model":"gpt-4.1-2025-04-14","output":[],"usage":null,"metadata":{}}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","type":"message","status":"in_progress","role":"assistant","content":[]}}

event: response.content_part.added
data: {"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":0,"content_index":0,"delta":"Hi"}

event: response.output_text.done
data: {"type":"response.output_text.done","sequence_number":5,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":0,"content_index":0,"text":"Hi there! How can I assist you today?"}

event: response.completed
data: {"type":"response.completed","sequence_number":6,"response":{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654","object":"response","created_at":1741290958,"status":"completed","error":null,"incomplete_details":null,"instructions":"You are a helpful assistant.","max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[{"id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there! How can I assist you today? {\"usage\":{\"input_tokens\":1}}","annotations":[],"usage":{"input_tokens":5}}]}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{"input_tokens":2048,"input_tokens_details":{"cached_tokens":1536},"output_tokens":311,"output_tokens_details":{"reasoning_tokens":256},"total_tokens":2359},"user":null,"metadata":{}}}

)";

// Anthropic's messages stream (message_start's usage, then cumulative message_delta usage).
const std::string messages_stream =
    R"(event: message_start
data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":2048,"cache_read_input_tokens":4096,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! \"usage\": {\"output_tokens\": 7}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":25,"cache_creation_input_tokens":2048,"cache_read_input_tokens":4096,"output_tokens":120}}

event: message_stop
data: {"type":"message_stop"}

)";

const std::string embeddings_body = R"({
  "object": "list",
  "data": [
    {
      "object": "embedding",
      "index": 0,
      "embedding": [-0.006929283495992422, -0.005336422007530928, 0.024047505110502243]
    }
  ],
  "model": "text-embedding-3-small",
  "usage": {
    "prompt_tokens": 8,
    "total_tokens": 8
  }
})";

}  // namespace

TEST(MeteringUsageReaderTest, ChatStreamUsageIsReadWholeByteByByteAndInRandomPieces) {
    const read_result r = read_every_way(dialect::chat_completions, true, false, chat_stream);
    expect_usage(r.usage, 1200 - 1024, 1024, 0, 42);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.out, chat_stream);
}

TEST(MeteringUsageReaderTest, OnlyAHidingEventStreamRewritesAndScanReadsInPlace) {
    EXPECT_TRUE(metering::usage_reader(dialect::chat_completions, true, true).rewrites());
    // A JSON answer to a stream request has no chunk to drop: relayed as it is.
    EXPECT_FALSE(metering::usage_reader(dialect::chat_completions, false, true).rewrites());
    EXPECT_FALSE(metering::usage_reader(dialect::chat_completions, true, false).rewrites());
    metering::usage_reader r(dialect::chat_completions, false, false);
    r.scan(R"({"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5}})");
    EXPECT_TRUE(r.complete());
    EXPECT_EQ(r.result().total(), 12);
}

TEST(MeteringUsageReaderTest, HidingDropsExactlyTheUsageChunkEventAndKeepsDone) {
    const read_result r = read_every_way(dialect::chat_completions, true, true, chat_stream);
    expect_usage(r.usage, 176, 1024, 0, 42);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.out, chat_head + chat_tail);
    EXPECT_NE(r.out.find("data: [DONE]\n\n"), std::string::npos);
}

TEST(MeteringUsageReaderTest, HidingWorksWithCrLfAndCrLineEndings) {
    for (std::string_view eol : {"\r\n", "\r"}) {
        const std::string head = replace_all(chat_head, "\n", eol);
        const std::string usage_event = replace_all(chat_usage_event, "\n", eol);
        const std::string tail = replace_all(chat_tail, "\n", eol);
        const read_result r =
            read_every_way(dialect::chat_completions, true, true, head + usage_event + tail);
        expect_usage(r.usage, 176, 1024, 0, 42);
        EXPECT_EQ(r.out, head + tail) << "eol size " << eol.size();
    }
}

TEST(MeteringUsageReaderTest, ChunksWithNullUsageAreNotUsageAndACutStreamIsIncomplete) {
    const read_result r = read_every_way(dialect::chat_completions, true, true, chat_head);
    EXPECT_FALSE(r.usage.seen);
    EXPECT_FALSE(r.complete);
    EXPECT_EQ(r.out, chat_head);
    // Azure's prompt filter chunk: empty choices, no usage. Passed on while hiding.
    const std::string filter =
        R"(data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]})"
        "\n\n";
    const read_result f =
        read_every_way(dialect::chat_completions, true, true, filter + chat_stream);
    EXPECT_EQ(f.out, filter + chat_head + chat_tail);
}

TEST(MeteringUsageReaderTest, UsageInStringsOrDeeperObjectsIsNotTaken) {
    const std::string stream =
        R"(data: {"choices":[{"index":0,"delta":{"content":"\"usage\":{\"prompt_tokens\":5}"},"usage":{"prompt_tokens":6}}],"x":{"usage":{"prompt_tokens":7}},"usage":null}

data: {"choices":[],"meta":{"usage":{"prompt_tokens":8,"completion_tokens":1}},"note":"usage"}

)";
    const read_result r = read_every_way(dialect::chat_completions, true, true, stream);
    EXPECT_FALSE(r.usage.seen);
    EXPECT_EQ(r.out, stream);
}

TEST(MeteringUsageReaderTest, UsageOnAChunkWithChoicesIsCountedButNotHidden) {
    // Some compatible servers put the usage on the last content chunk.
    const std::string stream =
        R"(data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}

data: [DONE]

)";
    const read_result r = read_every_way(dialect::chat_completions, true, true, stream);
    expect_usage(r.usage, 9, 0, 0, 2);
    EXPECT_EQ(r.out, stream);
}

TEST(MeteringUsageReaderTest, ResponsesUsageComesFromResponseCompleted) {
    const read_result r = read_every_way(dialect::responses, true, false, responses_stream);
    expect_usage(r.usage, 2048 - 1536, 1536, 0, 311);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.out, responses_stream);
    // Cut before response.completed: the earlier events carry no usage.
    const std::string cut =
        responses_stream.substr(0, responses_stream.find("event: response.completed"));
    const read_result partial = read_every_way(dialect::responses, true, false, cut);
    EXPECT_FALSE(partial.usage.seen);
    EXPECT_FALSE(partial.complete);
}

TEST(MeteringUsageReaderTest, ResponsesIncompleteAndFailedCountAndOtherEventsDoNot) {
    const std::string incomplete =
        R"(event: response.incomplete
data: {"type":"response.incomplete","sequence_number":9,"response":{"id":"resp_1","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[],"usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":0},"output_tokens":16,"output_tokens_details":{"reasoning_tokens":16},"total_tokens":116}}}

)";
    const read_result r = read_every_way(dialect::responses, true, false, incomplete);
    expect_usage(r.usage, 100, 0, 0, 16);
    EXPECT_TRUE(r.complete);
    // Without the event: line the data's own type says which event it is.
    const std::string failed =
        R"(data: {"type":"response.failed","response":{"id":"resp_2","status":"failed","usage":{"input_tokens":7,"output_tokens":0}}}

)";
    const read_result f = read_every_way(dialect::responses, true, false, failed);
    expect_usage(f.usage, 7, 0, 0, 0);
    EXPECT_TRUE(f.complete);
    const std::string in_progress =
        R"(event: response.in_progress
data: {"type":"response.in_progress","response":{"id":"resp_3","usage":{"input_tokens":7,"output_tokens":3}}}

)";
    const read_result p = read_every_way(dialect::responses, true, false, in_progress);
    EXPECT_FALSE(p.usage.seen);
    EXPECT_FALSE(p.complete);
}

TEST(MeteringUsageReaderTest, MessagesStreamTakesTheStartInputAndTheLastDeltaNeverTheSum) {
    const read_result r = read_every_way(dialect::messages, true, false, messages_stream);
    expect_usage(r.usage, 25, 4096, 2048, 120);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.out, messages_stream);
    EXPECT_EQ(r.usage.total(), 25 + 4096 + 2048 + 120);
}

TEST(MeteringUsageReaderTest, MessagesStreamIsCompleteOnlyOnceADeltaOrTheStopCame) {
    const std::string start =
        messages_stream.substr(0, messages_stream.find("event: content_block_start"));
    const read_result r = read_every_way(dialect::messages, true, false, start);
    expect_usage(r.usage, 25, 4096, 2048, 1);
    EXPECT_FALSE(r.complete);
    // A delta with output only replaces the output.
    const std::string first_delta = messages_stream.substr(
        0, messages_stream.find("event: message_delta",
                                messages_stream.find("event: message_delta") + 1));
    const read_result d = read_every_way(dialect::messages, true, false, first_delta);
    expect_usage(d.usage, 25, 4096, 2048, 89);
    EXPECT_TRUE(d.complete);
    // message_stop after message_start's usage completes it too.
    const std::string stop = start + "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    const read_result s = read_every_way(dialect::messages, true, false, stop);
    expect_usage(s.usage, 25, 4096, 2048, 1);
    EXPECT_TRUE(s.complete);
}

TEST(MeteringUsageReaderTest, EmbeddingsJsonBodyGivesPromptTokens) {
    const read_result r = read_every_way(dialect::embeddings, false, false, embeddings_body);
    expect_usage(r.usage, 8, 0, 0, 0);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.out, embeddings_body);
}

TEST(MeteringUsageReaderTest, JsonBodiesOfEachDialectGiveTheirUsage) {
    const std::string chat =
        R"({"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! \"usage\": {}","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"})";
    const read_result c = read_every_way(dialect::chat_completions, false, true, chat);
    expect_usage(c.usage, 16, 3, 0, 10);
    EXPECT_TRUE(c.complete);
    EXPECT_EQ(c.out, chat);  // nothing is hidden in a JSON body

    const std::string messages =
        R"({"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":100,"cache_read_input_tokens":50}})";
    const read_result m = read_every_way(dialect::messages, false, false, messages);
    expect_usage(m.usage, 2095, 50, 100, 503);

    const std::string response =
        R"({"id":"resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"In a peaceful grove..."}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}})";
    const read_result p = read_every_way(dialect::responses, false, false, response);
    expect_usage(p.usage, 36, 0, 0, 87);
    EXPECT_TRUE(p.complete);

    // An error body has no usage.
    const std::string error =
        R"({"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}})";
    const read_result e = read_every_way(dialect::chat_completions, false, false, error);
    EXPECT_FALSE(e.usage.seen);
    EXPECT_FALSE(e.complete);
}

TEST(MeteringUsageReaderTest, JsonBodyTakesOnlyTheTopLevelUsage) {
    const std::string body =
        R"({"data":[{"usage":{"prompt_tokens":1}}],"meta":{"usage":{"prompt_tokens":2}},"response":{"usage":{"prompt_tokens":3}},"usage":{"prompt_tokens":4,"total_tokens":4}})";
    const read_result r = read_every_way(dialect::embeddings, false, false, body);
    expect_usage(r.usage, 4, 0, 0, 0);
}

TEST(MeteringUsageReaderTest, EscapedKeysAndStringsAreDecoded) {
    // "\u0075sage" is "usage"; "us\"age" is not; escaped backslashes before a quote end strings.
    const std::string body =
        R"({"a\\":"x\\","us\"age":{"prompt_tokens":1},"b":"\\\"}{","\u0075sage":{"prompt_tokens":12,"total_tokens":12,"note":"}\"{"}})";
    const read_result r = read_every_way(dialect::embeddings, false, false, body);
    expect_usage(r.usage, 12, 0, 0, 0);
}

TEST(MeteringUsageReaderTest, DataLinesAreJoinedAndCommentsAndOtherFieldsIgnored) {
    const std::string stream =
        ": keep-alive\n"
        "id: 7\n"
        "retry: 1000\n"
        "data:{\"choices\":[],\n"
        ": a comment inside the event\n"
        "data:  \"usage\":{\"prompt_tokens\":3,\n"
        "data:\"completion_tokens\":4}}\n"
        "\n"
        "data: [DONE]\n"
        "\n";
    const read_result r = read_every_way(dialect::chat_completions, true, false, stream);
    expect_usage(r.usage, 3, 0, 0, 4);
    EXPECT_EQ(r.out, stream);
    const read_result h = read_every_way(dialect::chat_completions, true, true, stream);
    EXPECT_EQ(h.out, "data: [DONE]\n\n");
}

TEST(MeteringUsageReaderTest, OversizedUsageIsIgnored) {
    std::string big =
        R"(data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"pad":")";
    big += std::string(metering::usage_reader::max_usage_text, 'x');
    big += "\"}}\n\n";
    const read_result r = read_every_way(dialect::chat_completions, true, true, big);
    EXPECT_FALSE(r.usage.seen);
    EXPECT_EQ(r.out, big);
}

TEST(MeteringUsageReaderTest, AnEventLongerThanTheHoldLimitIsPassedOnUnchanged) {
    // A usage-only chunk padded past max_held_event cannot be held: it goes on as it came, and
    // its usage still counts.
    std::string padded = R"(data: {"choices":[],)";
    padded += std::string(metering::usage_reader::max_held_event + 100, ' ');
    padded += R"("usage":{"prompt_tokens":10,"completion_tokens":5}})";
    padded += "\n\n";
    const std::string stream = chat_head + padded + chat_usage_event + chat_tail;
    const read_result r = read_every_way(dialect::chat_completions, true, true, stream);
    EXPECT_EQ(r.out, chat_head + padded + chat_tail);
    expect_usage(r.usage, 176, 1024, 0, 42);
    EXPECT_LE(r.max_held, metering::usage_reader::max_held_event);
}

TEST(MeteringUsageReaderTest, ALastEventWithoutItsBlankLineCountsAtFinish) {
    const std::string stream = chat_head + chat_usage_event.substr(0, chat_usage_event.size() - 2);
    const read_result r = read_every_way(dialect::chat_completions, true, false, stream);
    expect_usage(r.usage, 176, 1024, 0, 42);
    EXPECT_EQ(r.out, stream);
    const read_result h = read_every_way(dialect::chat_completions, true, true, stream);
    EXPECT_EQ(h.out, chat_head);
    // Cut inside the usage JSON: nothing counts and everything held is passed on.
    const std::string cut = chat_head + chat_usage_event.substr(0, 300);
    const read_result c = read_every_way(dialect::chat_completions, true, true, cut);
    EXPECT_FALSE(c.usage.seen);
    EXPECT_EQ(c.out, cut);
}

TEST(MeteringUsageReaderTest, MemoryStaysBoundedOverAStreamOfHundredsOfMebibytes) {
#ifdef RLP_SANITIZED
    const std::size_t total = std::size_t{24} << 20;
#else
    const std::size_t total = std::size_t{200} << 20;
#endif
    // Content chunks, keep-alive comments and, every so often, an event longer than the hold.
    const std::string content =
        R"(data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"lorem ipsum dolor sit amet "},"finish_reason":null}],"usage":null})"
        "\n\n: ping\n\n";
    std::string long_event = "data: {\"choices\":[],\"pad\":\"";
    long_event += std::string(metering::usage_reader::max_held_event * 2, 'p');
    long_event += "\"}\n\n";
    metering::usage_reader reader(dialect::chat_completions, true, true);
    std::string out;
    std::size_t fed = 0;
    std::size_t passed = 0;
    std::size_t max_capacity = 0;
    for (std::size_t round = 0; fed < total; ++round) {
        const std::string& piece = round % 4096 == 4095 ? long_event : content;
        // Uneven pieces: the event boundaries fall anywhere within a feed.
        const std::size_t half = (round * 7) % piece.size();
        reader.feed(std::string_view(piece).substr(0, half), out);
        reader.feed(std::string_view(piece).substr(half), out);
        fed += piece.size();
        passed += out.size();
        out.clear();
        max_capacity = std::max(max_capacity, reader.buffer_capacity());
    }
    reader.feed(chat_usage_event, out);
    reader.feed(chat_tail, out);
    reader.finish(out);
    passed += out.size();
    EXPECT_EQ(passed, fed + chat_tail.size());  // everything but the usage chunk
    EXPECT_LE(max_capacity,
              metering::usage_reader::max_held_event + metering::usage_reader::max_usage_text);
    expect_usage(reader.result(), 176, 1024, 0, 42);
    EXPECT_TRUE(reader.complete());
}

TEST(MeteringUsageReaderTest, GarbageNeverGrowsMemoryAndPassesThroughUnchanged) {
    std::mt19937 rng(1234);
    const std::string alphabet = "{}[]\":,\\ \r\n datausgechoiespnl0123456789xyz";
    for (int i = 0; i < 300; ++i) {
        std::string body;
        const std::size_t n = std::uniform_int_distribution<std::size_t>(0, 2000)(rng);
        for (std::size_t k = 0; k < n; ++k)
            body +=
                alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
        for (dialect d : {dialect::chat_completions, dialect::responses, dialect::messages,
                          dialect::embeddings}) {
            for (bool event_stream : {false, true}) {
                const read_result r = read_pieces(d, event_stream, false, body, random_cuts(n, i));
                EXPECT_EQ(r.out, body);
                const read_result h =
                    read_pieces(d, event_stream, true, body, random_cuts(n, i + 1));
                EXPECT_LE(h.out.size(), body.size());
                EXPECT_LE(h.max_held, metering::usage_reader::max_held_event);
            }
        }
    }
}

TEST(MeteringUsageReaderTest, AMovedReaderKeepsItsState) {
    metering::usage_reader first(dialect::chat_completions, true, true);
    std::string out;
    first.feed(chat_head, out);
    first.feed(chat_usage_event.substr(0, 100), out);
    metering::usage_reader second = std::move(first);
    second.feed(chat_usage_event.substr(100), out);
    second.feed(chat_tail, out);
    second.finish(out);
    EXPECT_EQ(out, chat_head + chat_tail);
    expect_usage(second.result(), 176, 1024, 0, 42);
}

#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "loopback_server.hpp"

namespace rlp_test {

// Which API a request spoke, from the end of its path.
enum class mock_dialect {
    chat_completions,    // .../chat/completions
    responses,           // .../responses
    anthropic_messages,  // .../messages
    embeddings,          // .../embeddings
    health,              // .../health
    unknown,             // anything else: 404
};
std::string_view to_string(mock_dialect d);

// How the mock's answer to a request ended.
enum class mock_response_end {
    pending,    // still being answered (or the request body never arrived)
    complete,   // the whole response was written
    cut,        // the mock closed the connection on purpose (x-mock-cut)
    peer_gone,  // a write failed: the peer (the proxy) closed the connection first
    stopped,    // stop() interrupted it
};

struct received_request {
    std::string method;
    std::string target;  // as received, with the query
    std::string path;    // target without the query
    mock_dialect dialect = mock_dialect::unknown;
    std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
    std::string body;                                          // the first 4 MiB of the body
    std::uint64_t body_bytes = 0;
    bool body_complete = false;  // the whole body arrived

    // From the body when it is JSON (json is null otherwise, or when it is over 4 MiB).
    nlohmann::json json;
    std::string model;
    bool stream = false;                                // "stream": true
    nlohmann::json stream_options;                      // null when absent
    bool include_usage = false;                         // stream_options.include_usage == true
    std::optional<std::int64_t> max_tokens;             // chat, anthropic
    std::optional<std::int64_t> max_completion_tokens;  // chat (newer name)
    std::optional<std::int64_t> max_output_tokens;      // responses

    // What the mock answered: final once wait_for_requests counts this request (a client can
    // have read the whole answer a moment before).
    unsigned status = 0;
    std::uint64_t response_body_bytes = 0;   // body bytes written (before chunked framing)
    std::uint64_t response_body_writes = 0;  // socket writes that carried them
    mock_response_end end = mock_response_end::pending;

    std::string header(std::string_view name) const;  // first match, case-insensitive; "" if none
    bool has_header(std::string_view name) const;
};

// An in-process OpenAI/Anthropic look-alike on 127.0.0.1 for the budget tests: one thread per
// connection, synchronous Beast, keep-alive HTTP/1.1, like beast_upstream. Routes by the end of
// the path (the proxy adds its base path in front):
//   POST .../chat/completions  OpenAI chat: JSON, or with "stream": true SSE chunks ending with
//        a usage chunk (empty choices) only when stream_options.include_usage is true, then
//        "data: [DONE]". With include_usage every earlier chunk carries "usage": null, as
//        OpenAI's do.
//   POST .../responses         OpenAI Responses: JSON, or SSE response.created,
//        response.output_text.delta..., response.completed (the whole response, with usage)
//   POST .../messages          Anthropic: JSON, or SSE message_start (input usage, output 1),
//        content_block_start, ping, content_block_delta..., content_block_stop, message_delta
//        (cumulative usage.output_tokens), message_stop
//   POST .../embeddings        JSON with usage {prompt_tokens, total_tokens} (never streams)
//   GET  .../health            200 {"status":"ok"}
// Other paths get 404, other methods on these paths 405 (OpenAI-shaped error JSON).
//
// Behaviour per request, from request headers (defaults: set_default_headers, else as given):
//   x-mock-usage: I,O[,C[,W]]  usage to report (default 10,20,0,0). OpenAI: prompt/input
//        tokens I (C of them cached), completion/output O, total I+O. Anthropic: input_tokens I
//        (cache excluded, as Anthropic counts), output O, cache_read C, cache_creation W.
//        Embeddings: prompt = total = I.
//   x-mock-delay-ms: N         wait N ms before the response header
//   x-mock-chunk-delay-ms: N   wait N ms between SSE events
//   x-mock-chunks: N           N content pieces (default 3; text "tok0 tok1 ..."); the JSON
//        answer's text is their concatenation
//   x-mock-bytes: N            instead, about N bytes of content (pieces of 32 KiB, generated
//        while writing, never held whole); Responses streams put half in the deltas and half
//        in response.completed's copy of the text. JSON answers carry N bytes of text.
//   x-mock-one-byte: 1         write the body one byte per socket write (SSE: one byte per
//        HTTP chunk)
//   x-mock-cut: after-header | mid-body | before-usage   close the connection after the
//        header; after half the content pieces (JSON: half the body); or just before the
//        usage (chat: the usage chunk, Responses: response.completed, Anthropic: message_delta,
//        JSON: the "usage" key)
//   x-mock-status: N           answer status N (400..599; lower: the normal answer) with the
//        dialect's error JSON, no usage.
//        429: code rate_limit_exceeded + Retry-After: 1. 429q: 429 with code and type
//        insufficient_quota + x-should-retry: false (Anthropic: rate_limit_error + the same
//        header).
//   x-mock-no-usage: 1         no usage anywhere: no chat usage chunk even if asked, Responses'
//        response.completed with "usage": null, Anthropic events and JSON answers without usage
//   x-mock-usage-deltas: K     Anthropic streams: K message_delta events with cumulative
//        output_tokens (O*i/K, the last = O)
// Responses carry x-request-id (OpenAI) or request-id (Anthropic) = req_mock_<n>, and OpenAI
// ones x-ratelimit-* headers. Bodies are never compressed. Every request is recorded.
class mock_llm_upstream {
  public:
    using header_list = std::vector<std::pair<std::string, std::string>>;

    mock_llm_upstream();
    ~mock_llm_upstream();
    mock_llm_upstream(const mock_llm_upstream&) = delete;
    mock_llm_upstream& operator=(const mock_llm_upstream&) = delete;

    std::uint16_t port() const { return server_.port(); }
    // "http://127.0.0.1:PORT" + base_path
    std::string url(std::string_view base_path = "") const;

    // x-mock-* headers applied to every request that does not carry that header itself.
    void set_default_headers(header_list headers);

    std::size_t request_count() const { return request_count_.load(); }  // arrived
    std::size_t connection_count() const { return server_.connection_count(); }
    std::vector<received_request> requests() const;
    std::optional<received_request> last_request() const;
    // Waits until at least n requests have arrived (header read; maybe still being answered).
    bool wait_for_arrivals(std::size_t n, std::chrono::milliseconds timeout) const;
    // Waits until at least n requests have been answered (whatever the ending).
    bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const;

    void stop();

  private:
    void serve(int fd);

    std::atomic<std::size_t> request_count_{0};

    mutable std::mutex mutex_;
    mutable std::condition_variable cv_;
    header_list defaults_;
    std::vector<received_request> requests_;
    std::size_t finished_ = 0;
    // Last: its threads stop (in stop()) before anything they use goes.
    loopback_server server_;
};

}  // namespace rlp_test

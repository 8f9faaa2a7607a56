#include "mock_llm_upstream.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>

#include <array>
#include <cstdio>
#include <functional>
#include <limits>
#include <stdexcept>

namespace rlp_test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using ojson = nlohmann::ordered_json;

std::string_view to_string(mock_dialect d) {
    switch (d) {
        case mock_dialect::chat_completions:
            return "chat_completions";
        case mock_dialect::responses:
            return "responses";
        case mock_dialect::anthropic_messages:
            return "anthropic_messages";
        case mock_dialect::embeddings:
            return "embeddings";
        case mock_dialect::health:
            return "health";
        case mock_dialect::unknown:
            break;
    }
    return "unknown";
}

std::string received_request::header(std::string_view name) const {
    for (auto& [k, v] : headers)
        if (beast::iequals(k, name))
            return v;
    return {};
}

bool received_request::has_header(std::string_view name) const {
    for (auto& [k, v] : headers)
        if (beast::iequals(k, name))
            return true;
    return false;
}

namespace {

constexpr std::size_t body_capture_limit = 4 * 1024 * 1024;
constexpr std::size_t bytes_piece_size = 32 * 1024;
// Stands for the content text in a dumped JSON template; the text is spliced in while writing.
constexpr std::string_view text_placeholder = "MOCK_TEXT_PLACEHOLDER_7f3a9c";
constexpr std::int64_t created_at = 1700000000;

bool ends_with(std::string_view s, std::string_view tail) {
    return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

mock_dialect dialect_of(std::string_view path) {
    while (path.size() > 1 && path.back() == '/')
        path.remove_suffix(1);
    if (ends_with(path, "/chat/completions"))
        return mock_dialect::chat_completions;
    if (ends_with(path, "/responses"))
        return mock_dialect::responses;
    if (ends_with(path, "/messages"))
        return mock_dialect::anthropic_messages;
    if (ends_with(path, "/embeddings"))
        return mock_dialect::embeddings;
    if (ends_with(path, "/health"))
        return mock_dialect::health;
    return mock_dialect::unknown;
}

std::uint64_t to_u64(std::string_view s, std::uint64_t fallback) {
    while (!s.empty() && s.front() == ' ')
        s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ')
        s.remove_suffix(1);
    if (s.empty() || s.size() > 19)
        return fallback;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return fallback;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}

// JSON-safe filler text for x-mock-bytes: letters and spaces.
std::string_view filler(std::size_t n) {
    static const std::string text = [] {
        std::string t(bytes_piece_size, ' ');
        for (std::size_t i = 0; i < t.size(); ++i)
            t[i] = (i % 27 == 26) ? ' ' : static_cast<char>('a' + i % 27);
        return t;
    }();
    return std::string_view(text).substr(0, n);
}

enum class cut_point { none, after_header, mid_body, before_usage };

struct behaviour {
    std::uint64_t input = 10, output = 20, cached = 0, cache_write = 0;
    std::chrono::milliseconds delay{0}, chunk_delay{0};
    std::size_t chunks = 3;
    std::optional<std::uint64_t> bytes;
    bool one_byte = false;
    cut_point cut = cut_point::none;
    unsigned status = 0;  // 0: a normal answer
    bool quota = false;   // 429q
    bool no_usage = false;
    std::size_t usage_deltas = 1;
};

behaviour parse_behaviour(const received_request& req,
                          const mock_llm_upstream::header_list& defaults) {
    auto get = [&](std::string_view name) -> std::string {
        if (req.has_header(name))
            return req.header(name);
        for (auto& [k, v] : defaults)
            if (beast::iequals(k, name))
                return v;
        return {};
    };
    behaviour b;
    if (auto u = get("x-mock-usage"); !u.empty()) {
        std::array<std::uint64_t*, 4> fields{&b.input, &b.output, &b.cached, &b.cache_write};
        std::string_view rest = u;
        for (auto* f : fields) {
            auto comma = rest.find(',');
            *f = to_u64(rest.substr(0, comma), *f);
            if (comma == std::string_view::npos)
                break;
            rest.remove_prefix(comma + 1);
        }
    }
    b.delay = std::chrono::milliseconds(to_u64(get("x-mock-delay-ms"), 0));
    b.chunk_delay = std::chrono::milliseconds(to_u64(get("x-mock-chunk-delay-ms"), 0));
    b.chunks = static_cast<std::size_t>(to_u64(get("x-mock-chunks"), 3));
    if (auto n = get("x-mock-bytes"); !n.empty())
        b.bytes = to_u64(n, 0);
    b.one_byte = get("x-mock-one-byte") == "1";
    auto cut = get("x-mock-cut");
    if (cut == "after-header")
        b.cut = cut_point::after_header;
    else if (cut == "mid-body")
        b.cut = cut_point::mid_body;
    else if (cut == "before-usage")
        b.cut = cut_point::before_usage;
    if (auto s = get("x-mock-status"); !s.empty()) {
        if (s.back() == 'q' || s.back() == 'Q') {
            b.quota = true;
            s.pop_back();
        }
        auto code = to_u64(s, 0);
        // Below 400 (e.g. 200, to override a default): the normal answer.
        b.status = (code >= 400 && code <= 599) ? static_cast<unsigned>(code) : 0;
        if (b.status != 429)
            b.quota = false;
    }
    b.no_usage = get("x-mock-no-usage") == "1";
    b.usage_deltas = std::max<std::size_t>(1, to_u64(get("x-mock-usage-deltas"), 1));
    return b;
}

// The content of an answer: x-mock-chunks small pieces, or x-mock-bytes in 32 KiB pieces.
class content_plan {
  public:
    content_plan(const behaviour& b, std::uint64_t bytes_divisor = 1) {
        if (b.bytes) {
            bytes_ = *b.bytes / bytes_divisor;
            by_bytes_ = true;
        } else {
            for (std::size_t i = 0; i < b.chunks; ++i)
                texts_.push_back("tok" + std::to_string(i) + " ");
        }
    }
    std::size_t count() const {
        return by_bytes_
                   ? static_cast<std::size_t>((bytes_ + bytes_piece_size - 1) / bytes_piece_size)
                   : texts_.size();
    }
    std::string_view piece(std::size_t i) const {
        if (!by_bytes_)
            return texts_[i];
        std::uint64_t left = bytes_ - static_cast<std::uint64_t>(i) * bytes_piece_size;
        return filler(static_cast<std::size_t>(std::min<std::uint64_t>(left, bytes_piece_size)));
    }
    std::uint64_t total() const {
        if (by_bytes_)
            return bytes_;
        std::uint64_t t = 0;
        for (auto& s : texts_)
            t += s.size();
        return t;
    }
    // Where a cut mid-body goes: after this many pieces (at least one when there is one).
    std::size_t half() const { return count() == 0 ? 0 : std::max<std::size_t>(1, count() / 2); }

  private:
    bool by_bytes_ = false;
    std::uint64_t bytes_ = 0;
    std::vector<std::string> texts_;
};

// A dumped JSON split around the text placeholder (tail empty when there is none).
struct json_template {
    std::string head, tail;
    bool has_text = false;
};

json_template split_template(const ojson& j) {
    json_template t;
    std::string s = j.dump();
    auto at = s.find(text_placeholder);
    if (at == std::string::npos) {
        t.head = std::move(s);
        return t;
    }
    t.head = s.substr(0, at);
    t.tail = s.substr(at + text_placeholder.size());
    t.has_text = true;
    return t;
}

std::string fill(const ojson& j, std::string_view text) {
    auto t = split_template(j);
    return t.head + std::string(t.has_text ? text : "") + t.tail;
}

// Writes a response body: raw (Content-Length) or as chunks; optionally one byte per write;
// stops after `limit` bytes (a planned cut).
class body_out {
  public:
    body_out(tcp::socket& sock, bool chunked, bool one_byte,
             std::uint64_t limit = std::numeric_limits<std::uint64_t>::max())
        : sock_(sock), chunked_(chunked), one_byte_(one_byte), limit_(limit) {}

    bool write(std::string_view data) {
        if (failed_ || cut_)
            return false;
        if (data.size() > limit_ - written_) {
            data = data.substr(0, static_cast<std::size_t>(limit_ - written_));
            cut_ = true;
        }
        if (one_byte_) {
            for (std::size_t i = 0; i < data.size(); ++i) {
                if (!send(data.substr(i, 1)))
                    return false;
                ++written_;
            }
        } else if (!data.empty()) {
            if (!send(data))
                return false;
            written_ += data.size();
        }
        return !cut_;
    }
    bool finish() { return !chunked_ || send_raw("0\r\n\r\n"); }
    bool failed() const { return failed_; }
    bool cut() const { return cut_; }
    std::uint64_t written() const { return written_; }
    std::uint64_t writes() const { return writes_; }

  private:
    bool send(std::string_view piece) {
        ++writes_;
        if (!chunked_)
            return send_raw(piece);
        char size[24];
        int n = std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
        std::array<net::const_buffer, 3> bufs{net::buffer(size, static_cast<std::size_t>(n)),
                                              net::buffer(piece.data(), piece.size()),
                                              net::buffer("\r\n", 2)};
        boost::system::error_code ec;
        net::write(sock_, bufs, ec);
        failed_ = failed_ || ec;
        return !ec;
    }
    bool send_raw(std::string_view data) {
        boost::system::error_code ec;
        net::write(sock_, net::buffer(data.data(), data.size()), ec);
        failed_ = failed_ || ec;
        return !ec;
    }

    tcp::socket& sock_;
    bool chunked_;
    bool one_byte_;
    std::uint64_t limit_;
    std::uint64_t written_ = 0;
    std::uint64_t writes_ = 0;  // socket writes carrying body bytes
    bool failed_ = false;
    bool cut_ = false;
};

struct outcome {
    unsigned status = 0;
    std::uint64_t body_bytes = 0;
    mock_response_end end = mock_response_end::complete;
    std::uint64_t body_writes = 0;
};

// Answers one request on the socket, as the behaviour says.
class responder {
  public:
    using sleeper = std::function<bool(std::chrono::milliseconds)>;  // true: stopping

    responder(tcp::socket& sock, const received_request& req, const behaviour& b, std::size_t n,
              bool keep_alive, sleeper sleep, const std::atomic<bool>& stopping)
        : sock_(sock),
          req_(req),
          b_(b),
          n_(n),
          keep_alive_(keep_alive),
          sleep_(std::move(sleep)),
          stopping_(stopping) {}

    outcome run() {
        if (b_.delay.count() > 0 && sleep_(b_.delay))
            return {0, 0, mock_response_end::stopped};
        if (b_.status != 0)
            return error_answer();
        bool post = req_.method == "POST";
        switch (req_.dialect) {
            case mock_dialect::health:
                return req_.method == "GET" || req_.method == "HEAD"
                           ? json_answer(200, ojson{{"status", "ok"}}, nullptr)
                           : error(405, "method not allowed");
            case mock_dialect::unknown:
                return error(404, "no such route on the mock: " + req_.path);
            case mock_dialect::embeddings:
                return post ? embeddings() : error(405, "method not allowed");
            case mock_dialect::chat_completions:
                return !post         ? error(405, "method not allowed")
                       : req_.stream ? chat_stream()
                                     : chat_json();
            case mock_dialect::responses:
                return !post         ? error(405, "method not allowed")
                       : req_.stream ? responses_stream()
                                     : responses_json();
            case mock_dialect::anthropic_messages:
                return !post         ? error(405, "method not allowed")
                       : req_.stream ? anthropic_stream()
                                     : anthropic_json();
        }
        return error(404, "no such route");
    }

  private:
    bool anthropic() const { return req_.dialect == mock_dialect::anthropic_messages; }
    std::string model(std::string_view fallback) const {
        return req_.model.empty() ? std::string(fallback) : req_.model;
    }
    std::string id(std::string_view prefix) const {
        return std::string(prefix) + std::to_string(n_);
    }

    ojson chat_usage() const {
        return {{"prompt_tokens", b_.input},
                {"completion_tokens", b_.output},
                {"total_tokens", b_.input + b_.output},
                {"prompt_tokens_details", {{"cached_tokens", b_.cached}, {"audio_tokens", 0}}},
                {"completion_tokens_details",
                 {{"reasoning_tokens", 0},
                  {"audio_tokens", 0},
                  {"accepted_prediction_tokens", 0},
                  {"rejected_prediction_tokens", 0}}}};
    }
    ojson responses_usage() const {
        return {{"input_tokens", b_.input},
                {"input_tokens_details", {{"cached_tokens", b_.cached}}},
                {"output_tokens", b_.output},
                {"output_tokens_details", {{"reasoning_tokens", 0}}},
                {"total_tokens", b_.input + b_.output}};
    }
    ojson anthropic_usage(std::uint64_t output) const {
        return {{"input_tokens", b_.input},
                {"cache_creation_input_tokens", b_.cache_write},
                {"cache_read_input_tokens", b_.cached},
                {"output_tokens", output}};
    }

    std::string dialect_headers() const {
        std::string h;
        if (anthropic()) {
            h += "request-id: req_mock_" + std::to_string(n_) + "\r\n";
            h += "anthropic-ratelimit-requests-limit: 4000\r\n";
            h += "anthropic-ratelimit-requests-remaining: 3999\r\n";
        } else {
            h += "x-request-id: req_mock_" + std::to_string(n_) + "\r\n";
            h += "openai-processing-ms: 1\r\n";
            h += "x-ratelimit-limit-requests: 10000\r\n";
            h += "x-ratelimit-remaining-requests: 9999\r\n";
            h += "x-ratelimit-reset-requests: 6ms\r\n";
            h += "x-ratelimit-limit-tokens: 30000000\r\n";
            h += "x-ratelimit-remaining-tokens: 29999000\r\n";
            h += "x-ratelimit-reset-tokens: 0s\r\n";
        }
        return h;
    }

    bool send_head(unsigned status, std::string_view content_type,
                   std::optional<std::uint64_t> length, const std::string& extra) {
        std::string head = "HTTP/1.1 " + std::to_string(status) + " " +
                           std::string(http::obsolete_reason(http::int_to_status(status))) +
                           "\r\nContent-Type: " + std::string(content_type) + "\r\n";
        if (length)
            head += "Content-Length: " + std::to_string(*length) + "\r\n";
        else
            head += "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n";
        head += dialect_headers() + extra;
        if (!keep_alive_)
            head += "Connection: close\r\n";
        head += "\r\n";
        boost::system::error_code ec;
        net::write(sock_, net::buffer(head), ec);
        return !ec;
    }

    outcome ended(unsigned status, const body_out& out) const {
        outcome o{status, out.written(), mock_response_end::complete, out.writes()};
        if (out.cut())
            o.end = mock_response_end::cut;
        else if (stopping_)
            o.end = mock_response_end::stopped;
        else if (out.failed())
            o.end = mock_response_end::peer_gone;
        return o;
    }

    // A JSON answer with Content-Length; the content pieces go where the placeholder is.
    outcome json_answer(unsigned status, const ojson& body, const content_plan* content,
                        const std::string& extra = {}) {
        auto t = split_template(body);
        std::uint64_t text = (t.has_text && content) ? content->total() : 0;
        std::uint64_t total = t.head.size() + text + t.tail.size();
        std::uint64_t limit = std::numeric_limits<std::uint64_t>::max();
        if (b_.cut == cut_point::mid_body) {
            limit = total / 2;
        } else if (b_.cut == cut_point::before_usage) {
            if (auto at = t.head.find("\"usage\""); at != std::string::npos)
                limit = at;
            else if (at = t.tail.find("\"usage\""); at != std::string::npos)
                limit = t.head.size() + text + at;
            else
                limit = total / 2;
        }
        if (!send_head(status, "application/json", total, extra))
            return {status, 0, mock_response_end::peer_gone};
        if (b_.cut == cut_point::after_header)
            return {status, 0, mock_response_end::cut};
        body_out out(sock_, false, b_.one_byte, limit);
        bool ok = out.write(t.head);
        if (t.has_text && content)
            for (std::size_t i = 0; ok && i < content->count() && !stopping_; ++i)
                ok = out.write(content->piece(i));
        if (ok && !stopping_)
            out.write(t.tail);
        return ended(status, out);
    }

    outcome error(unsigned status, const std::string& message, bool quota = false) {
        std::string extra;
        ojson body;
        if (anthropic()) {
            std::string type = status == 400   ? "invalid_request_error"
                               : status == 401 ? "authentication_error"
                               : status == 403 ? "permission_error"
                               : status == 404 ? "not_found_error"
                               : status == 413 ? "request_too_large"
                               : status == 429 ? "rate_limit_error"
                               : status == 529 ? "overloaded_error"
                               : status >= 500 ? "api_error"
                                               : "invalid_request_error";
            body = {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
        } else {
            std::string type = status >= 500 ? "server_error" : "invalid_request_error";
            ojson code = nullptr;
            if (status == 401)
                code = "invalid_api_key";
            else if (status == 404 && req_.dialect != mock_dialect::unknown)
                code = "model_not_found";
            else if (status == 429 && quota) {
                type = "insufficient_quota";
                code = "insufficient_quota";
            } else if (status == 429) {
                type = "requests";
                code = "rate_limit_exceeded";
            }
            body = {{"error",
                     {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
        }
        if (status == 429)
            extra = quota ? "x-should-retry: false\r\n" : "retry-after: 1\r\n";
        return json_answer(status, body, nullptr, extra);
    }

    outcome error_answer() {
        std::string message = "mock error " + std::to_string(b_.status);
        if (b_.quota)
            message =
                "You exceeded your current quota, please check your plan and billing details.";
        else if (b_.status == 429)
            message = "Rate limit reached for requests (mock). Please try again in 1s.";
        return error(b_.status, message, b_.quota);
    }

    outcome embeddings() {
        ojson body = {
            {"object", "list"},
            {"data", ojson::array({{{"object", "embedding"},
                                    {"index", 0},
                                    {"embedding", {0.0023064255, -0.009327292, 0.015797347}}}})},
            {"model", model("text-embedding-3-small")}};
        if (!b_.no_usage)
            body["usage"] = {{"prompt_tokens", b_.input}, {"total_tokens", b_.input}};
        return json_answer(200, body, nullptr);
    }

    outcome chat_json() {
        content_plan content(b_);
        ojson body = {
            {"id", id("chatcmpl-mock")},
            {"object", "chat.completion"},
            {"created", created_at},
            {"model", model("gpt-4o-mini")},
            {"choices",
             ojson::array(
                 {{{"index", 0},
                   {"message",
                    {{"role", "assistant"}, {"content", text_placeholder}, {"refusal", nullptr}}},
                   {"logprobs", nullptr},
                   {"finish_reason", "stop"}}})}};
        if (!b_.no_usage)
            body["usage"] = chat_usage();
        body["system_fingerprint"] = "fp_mock";
        return json_answer(200, body, &content);
    }

    outcome responses_json() {
        content_plan content(b_);
        return json_answer(200, responses_object("completed", true), &content);
    }

    ojson responses_object(std::string_view status, bool done) const {
        ojson r = {{"id", id("resp_mock")},
                   {"object", "response"},
                   {"created_at", created_at},
                   {"status", status},
                   {"model", model("gpt-4o-mini")}};
        if (done) {
            r["output"] =
                ojson::array({{{"type", "message"},
                               {"id", id("msg_mock")},
                               {"status", "completed"},
                               {"role", "assistant"},
                               {"content", ojson::array({{{"type", "output_text"},
                                                          {"text", text_placeholder},
                                                          {"annotations", ojson::array()}}})}}});
            r["usage"] = b_.no_usage ? ojson(nullptr) : responses_usage();
        } else {
            r["output"] = ojson::array();
            r["usage"] = nullptr;
        }
        return r;
    }

    outcome anthropic_json() {
        content_plan content(b_);
        ojson body = {{"id", id("msg_mock")},
                      {"type", "message"},
                      {"role", "assistant"},
                      {"model", model("claude-3-5-haiku-20241022")},
                      {"content", ojson::array({{{"type", "text"}, {"text", text_placeholder}}})},
                      {"stop_reason", "end_turn"},
                      {"stop_sequence", nullptr}};
        if (!b_.no_usage)
            body["usage"] = anthropic_usage(b_.output);
        return json_answer(200, body, &content);
    }

    // SSE: one HTTP chunk per event, x-mock-chunk-delay-ms between events.
    class sse {
      public:
        explicit sse(responder& r) : r_(r), out_(r.sock_, true, r.b_.one_byte) {}
        bool event(std::string_view name, std::string_view data) {
            if (!pause())
                return false;
            std::string e;
            if (!name.empty())
                e = "event: " + std::string(name) + "\n";
            e += "data: ";
            e += data;
            e += "\n\n";
            return out_.write(e);
        }
        // An event whose data is a template with the content pieces spliced in, several writes.
        bool big_event(std::string_view name, const ojson& data, const content_plan& content) {
            if (!pause())
                return false;
            auto t = split_template(data);
            std::string first = name.empty() ? "" : "event: " + std::string(name) + "\n";
            bool ok = out_.write(first + "data: " + t.head);
            for (std::size_t i = 0; ok && t.has_text && i < content.count() && !r_.stopping_; ++i)
                ok = out_.write(content.piece(i));
            return ok && !r_.stopping_ && out_.write(t.tail + "\n\n");
        }
        outcome done() {
            if (!out_.failed() && !r_.stopping_)
                out_.finish();
            return r_.ended(200, out_);
        }
        outcome cut() {
            auto o = r_.ended(200, out_);
            if (o.end == mock_response_end::complete)
                o.end = mock_response_end::cut;
            return o;
        }

      private:
        bool pause() {
            if (r_.stopping_)
                return false;
            if (!first_ && r_.b_.chunk_delay.count() > 0 && r_.sleep_(r_.b_.chunk_delay))
                return false;
            first_ = false;
            return true;
        }
        responder& r_;
        body_out out_;
        bool first_ = true;
    };

    // Sends the header of an SSE answer; false when the answer ends there.
    bool sse_head(outcome& o) {
        if (!send_head(200, "text/event-stream; charset=utf-8", std::nullopt, {})) {
            o = {200, 0, mock_response_end::peer_gone};
            return false;
        }
        if (b_.cut == cut_point::after_header) {
            o = {200, 0, mock_response_end::cut};
            return false;
        }
        return true;
    }

    outcome chat_stream() {
        outcome o;
        if (!sse_head(o))
            return o;
        content_plan content(b_);
        sse s(*this);
        auto chunk = [&](ojson choices) {
            ojson c = {{"id", id("chatcmpl-mock")},       {"object", "chat.completion.chunk"},
                       {"created", created_at},           {"model", model("gpt-4o-mini")},
                       {"system_fingerprint", "fp_mock"}, {"choices", std::move(choices)}};
            if (req_.include_usage)
                c["usage"] = nullptr;
            return c;
        };
        auto choice = [](ojson delta, ojson finish) {
            return ojson::array({{{"index", 0},
                                  {"delta", std::move(delta)},
                                  {"logprobs", nullptr},
                                  {"finish_reason", std::move(finish)}}});
        };
        if (!s.event("", chunk(choice({{"role", "assistant"}, {"content", ""}}, nullptr)).dump()))
            return s.done();
        auto piece = chunk(choice({{"content", text_placeholder}}, nullptr));
        auto t = split_template(piece);
        for (std::size_t i = 0; i < content.count(); ++i) {
            if (b_.cut == cut_point::mid_body && i == content.half())
                return s.cut();
            if (!s.event("", t.head + std::string(content.piece(i)) + t.tail))
                return s.done();
        }
        if (!s.event("", chunk(choice(ojson::object(), "stop")).dump()))
            return s.done();
        if (b_.cut == cut_point::before_usage || b_.cut == cut_point::mid_body)
            return s.cut();
        if (req_.include_usage && !b_.no_usage) {
            ojson u = chunk(ojson::array());
            u["usage"] = chat_usage();
            if (!s.event("", u.dump()))
                return s.done();
        }
        s.event("", "[DONE]");
        return s.done();
    }

    outcome responses_stream() {
        outcome o;
        if (!sse_head(o))
            return o;
        // The deltas and response.completed's copy of the text share x-mock-bytes.
        content_plan content(b_, 2);
        sse s(*this);
        std::int64_t seq = 0;
        ojson created = {{"type", "response.created"},
                         {"sequence_number", seq++},
                         {"response", responses_object("in_progress", false)}};
        if (!s.event("response.created", created.dump()))
            return s.done();
        for (std::size_t i = 0; i < content.count(); ++i) {
            if (b_.cut == cut_point::mid_body && i == content.half())
                return s.cut();
            ojson delta = {{"type", "response.output_text.delta"},
                           {"sequence_number", seq++},
                           {"item_id", id("msg_mock")},
                           {"output_index", 0},
                           {"content_index", 0},
                           {"delta", text_placeholder}};
            if (!s.event("response.output_text.delta", fill(delta, content.piece(i))))
                return s.done();
        }
        if (b_.cut == cut_point::before_usage || b_.cut == cut_point::mid_body)
            return s.cut();
        ojson completed = {{"type", "response.completed"},
                           {"sequence_number", seq++},
                           {"response", responses_object("completed", true)}};
        s.big_event("response.completed", completed, content);
        return s.done();
    }

    outcome anthropic_stream() {
        outcome o;
        if (!sse_head(o))
            return o;
        content_plan content(b_);
        sse s(*this);
        ojson message = {{"id", id("msg_mock")},      {"type", "message"},
                         {"role", "assistant"},       {"model", model("claude-3-5-haiku-20241022")},
                         {"content", ojson::array()}, {"stop_reason", nullptr},
                         {"stop_sequence", nullptr}};
        if (!b_.no_usage)
            message["usage"] = anthropic_usage(1);
        if (!s.event("message_start",
                     ojson{{"type", "message_start"}, {"message", message}}.dump()))
            return s.done();
        ojson block_start = {{"type", "content_block_start"},
                             {"index", 0},
                             {"content_block", {{"type", "text"}, {"text", ""}}}};
        if (!s.event("content_block_start", block_start.dump()) ||
            !s.event("ping", R"({"type": "ping"})"))
            return s.done();
        for (std::size_t i = 0; i < content.count(); ++i) {
            if (b_.cut == cut_point::mid_body && i == content.half())
                return s.cut();
            ojson delta = {{"type", "content_block_delta"},
                           {"index", 0},
                           {"delta", {{"type", "text_delta"}, {"text", text_placeholder}}}};
            if (!s.event("content_block_delta", fill(delta, content.piece(i))))
                return s.done();
        }
        if (!s.event("content_block_stop", R"({"type":"content_block_stop","index":0})"))
            return s.done();
        if (b_.cut == cut_point::before_usage || b_.cut == cut_point::mid_body)
            return s.cut();
        for (std::size_t k = 1; k <= b_.usage_deltas; ++k) {
            ojson d = {{"type", "message_delta"},
                       {"delta", {{"stop_reason", "end_turn"}, {"stop_sequence", nullptr}}}};
            if (!b_.no_usage)
                d["usage"] = {{"output_tokens", b_.output * k / b_.usage_deltas}};
            if (!s.event("message_delta", d.dump()))
                return s.done();
        }
        s.event("message_stop", R"({"type":"message_stop"})");
        return s.done();
    }

    tcp::socket& sock_;
    const received_request& req_;
    const behaviour& b_;
    std::size_t n_;
    bool keep_alive_;
    sleeper sleep_;
    const std::atomic<bool>& stopping_;
};

void parse_body_fields(received_request& rec) {
    if (!rec.body_complete || rec.body_bytes > body_capture_limit || rec.body.empty())
        return;
    auto j = nlohmann::json::parse(rec.body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return;
    if (auto m = j.find("model"); m != j.end() && m->is_string())
        rec.model = m->get<std::string>();
    if (auto s = j.find("stream"); s != j.end() && s->is_boolean())
        rec.stream = s->get<bool>();
    if (auto so = j.find("stream_options"); so != j.end()) {
        rec.stream_options = *so;
        if (so->is_object())
            if (auto iu = so->find("include_usage"); iu != so->end() && iu->is_boolean())
                rec.include_usage = iu->get<bool>();
    }
    auto int_field = [&](const char* name) -> std::optional<std::int64_t> {
        if (auto f = j.find(name); f != j.end() && f->is_number_integer())
            return f->get<std::int64_t>();
        return std::nullopt;
    };
    rec.max_tokens = int_field("max_tokens");
    rec.max_completion_tokens = int_field("max_completion_tokens");
    rec.max_output_tokens = int_field("max_output_tokens");
    rec.json = std::move(j);
}

}  // namespace

mock_llm_upstream::mock_llm_upstream() {
    server_.start([this](int fd) { serve(fd); });
}

mock_llm_upstream::~mock_llm_upstream() {
    stop();
}

std::string mock_llm_upstream::url(std::string_view base_path) const {
    return server_.url(base_path);
}

void mock_llm_upstream::set_default_headers(header_list headers) {
    std::lock_guard lock(mutex_);
    defaults_ = std::move(headers);
}

std::vector<received_request> mock_llm_upstream::requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}

std::optional<received_request> mock_llm_upstream::last_request() const {
    std::lock_guard lock(mutex_);
    if (requests_.empty())
        return std::nullopt;
    return requests_.back();
}

bool mock_llm_upstream::wait_for_arrivals(std::size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

bool mock_llm_upstream::wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return finished_ >= n; });
}

void mock_llm_upstream::stop() {
    server_.stop();
}

void mock_llm_upstream::serve(int fd) {
    net::io_context ioc;
    tcp::socket sock(ioc);
    sock.assign(tcp::v4(), fd);
    beast::flat_buffer buffer;
    std::vector<char> body_buf(64 * 1024);
    boost::system::error_code ec;

    while (!server_.stopping()) {
        http::request_parser<http::buffer_body> parser;
        parser.header_limit(64 * 1024);
        parser.body_limit(boost::none);
        http::read_header(sock, buffer, parser, ec);
        if (ec)
            break;

        received_request rec;
        auto& msg = parser.get();
        rec.method = std::string(msg.method_string());
        rec.target = std::string(msg.target());
        rec.path = rec.target.substr(0, rec.target.find('?'));
        rec.dialect = dialect_of(rec.path);
        for (const auto& f : msg.base())
            rec.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
        std::size_t index;
        {
            std::lock_guard lock(mutex_);
            index = requests_.size();
            requests_.push_back(rec);
            ++request_count_;
        }
        cv_.notify_all();
        auto finish = [&](const outcome* o) {
            {
                std::lock_guard lock(mutex_);
                auto& r = requests_[index];
                if (o) {
                    r.status = o->status;
                    r.response_body_bytes = o->body_bytes;
                    r.response_body_writes = o->body_writes;
                    r.end = o->end;
                }
                ++finished_;
            }
            cv_.notify_all();
        };

        if (beast::iequals(msg[http::field::expect], "100-continue")) {
            net::write(sock, net::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")), ec);
            if (ec) {
                finish(nullptr);
                break;
            }
        }

        bool body_ok = true;
        while (!parser.is_done()) {
            parser.get().body().data = body_buf.data();
            parser.get().body().size = body_buf.size();
            http::read(sock, buffer, parser, ec);
            if (ec == http::error::need_buffer)
                ec = {};
            if (ec) {
                body_ok = false;
                break;
            }
            std::size_t n = body_buf.size() - parser.get().body().size;
            rec.body_bytes += n;
            if (rec.body.size() < body_capture_limit)
                rec.body.append(body_buf.data(), std::min(n, body_capture_limit - rec.body.size()));
        }
        rec.body_complete = body_ok;
        parse_body_fields(rec);
        bool keep_alive = parser.get().keep_alive();
        header_list defaults;
        {
            std::lock_guard lock(mutex_);
            auto& r = requests_[index];
            r = rec;
            defaults = defaults_;
        }
        if (!body_ok) {
            finish(nullptr);
            break;
        }

        behaviour b = parse_behaviour(rec, defaults);
        responder answer(
            sock, rec, b, index + 1, keep_alive,
            [this](std::chrono::milliseconds d) { return server_.sleep_or_stop(d); },
            server_.stopping_flag());
        outcome o = answer.run();
        finish(&o);
        if (o.end != mock_response_end::complete || !keep_alive)
            break;
    }

    server_.forget(fd);
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
}

}  // namespace rlp_test

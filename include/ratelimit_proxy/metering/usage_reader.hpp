#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ratelimit_proxy/metering/usage.hpp"

namespace ratelimit_proxy::metering {

// Reads the usage out of a response body as it is relayed, in constant memory: an
// incremental SSE decoder (for text/event-stream) feeding a small JSON scanner that keeps only
// the "usage" object of each JSON value (top level, or under "response" / "message" as the
// Responses API and Anthropic's message_start carry it). The bytes go on to the client as they
// came, except a chat completions usage-only chunk (empty choices, usage set) when told to
// hide it: that event is dropped whole.
//
// Per dialect: chat completions and embeddings: the last usage seen; Responses: the usage of
// response.completed / response.incomplete / response.failed; Anthropic messages:
// message_start's usage for the input, then message_delta.usage, cumulative (the last wins).
class usage_reader {
  public:
    usage_reader(dialect d, bool event_stream, bool hide_usage_chunk);
    ~usage_reader();
    usage_reader(usage_reader&&) noexcept;
    usage_reader& operator=(usage_reader&&) noexcept;

    // Scans `in`; appends to `out` what the client gets (all of `in`, unless hiding). Never
    // holds back more than one SSE event of at most max_held_event bytes (a longer event is
    // passed on as it comes: it cannot be a usage-only chunk).
    void feed(std::string_view in, std::string& out);
    // Whether feed() may leave bytes out (hiding the usage chunk). When not, scan() reads
    // the bytes in place, and the caller relays them as they are: no copy.
    bool rewrites() const;
    void scan(std::string_view in);
    // The body ended: appends whatever is still held back. A last event the body ended inside
    // (no blank line after it) still counts if its JSON is whole, and is still hidden if it is
    // the usage-only chunk.
    void finish(std::string& out);

    const metering::usage& result() const;
    // The dialect's final usage was seen (a stream's last usage event, a JSON body's usage).
    bool complete() const;

    // The bytes held back now, and the memory of every buffer the reader grows (the held event,
    // the usage text): at most max_held_event + max_usage_text, whatever the body's length.
    std::size_t held_bytes() const;
    std::size_t buffer_capacity() const;

    static constexpr std::size_t max_held_event = 64 * 1024;
    // A usage object's text beyond this is ignored (real ones are a few hundred bytes).
    static constexpr std::size_t max_usage_text = 8 * 1024;

  private:
    struct state;
    std::unique_ptr<state> state_;
};

}  // namespace ratelimit_proxy::metering

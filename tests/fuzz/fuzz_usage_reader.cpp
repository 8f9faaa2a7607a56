// libFuzzer target: the usage reader on arbitrary response bodies. The first byte picks the
// dialect, event stream or JSON body, and hiding; the second seeds where the body is split.
// Whatever the bytes: no crash, memory bounded (held bytes and buffers), the same output and
// usage however the body is split, the body unchanged when not hiding, never longer when hiding.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "ratelimit_proxy/metering/usage_reader.hpp"

namespace {

namespace metering = ratelimit_proxy::metering;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "fuzz_usage_reader: %s\n", what);
        __builtin_trap();
    }
}

struct outcome {
    std::string out;
    metering::usage usage;
    bool complete = false;
};

// Feeds `body` in pieces of 1..max_piece bytes drawn from `seed` (max_piece 0: whole).
outcome read(metering::dialect d, bool event_stream, bool hide, std::string_view body,
             std::uint32_t seed, std::size_t max_piece) {
    metering::usage_reader reader(d, event_stream, hide);
    outcome o;
    constexpr std::size_t bound =
        metering::usage_reader::max_held_event + metering::usage_reader::max_usage_text;
    while (!body.empty()) {
        std::size_t n = body.size();
        if (max_piece > 0) {
            seed = seed * 1103515245u + 12345u;
            n = std::min<std::size_t>(n, 1 + (seed >> 16) % max_piece);
        }
        reader.feed(body.substr(0, n), o.out);
        body.remove_prefix(n);
        check(reader.held_bytes() <= metering::usage_reader::max_held_event, "held too much");
        check(reader.buffer_capacity() <= bound, "buffers grew past their bound");
    }
    reader.finish(o.out);
    check(reader.held_bytes() == 0, "bytes still held after finish");
    o.usage = reader.result();
    o.complete = reader.complete();
    const auto& u = o.usage;
    check(u.input >= 0 && u.cached_input >= 0 && u.cache_write >= 0 && u.output >= 0,
          "negative usage");
    check(!o.complete || u.seen, "complete without usage");
    return o;
}

bool same(const outcome& a, const outcome& b) {
    return a.out == b.out && a.complete == b.complete && a.usage.seen == b.usage.seen &&
           a.usage.input == b.usage.input && a.usage.cached_input == b.usage.cached_input &&
           a.usage.cache_write == b.usage.cache_write && a.usage.output == b.usage.output;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    constexpr metering::dialect dialects[] = {
        metering::dialect::chat_completions, metering::dialect::responses,
        metering::dialect::messages, metering::dialect::embeddings};
    const metering::dialect d = dialects[data[0] & 3];
    const bool event_stream = (data[0] & 4) != 0;
    const bool hide = (data[0] & 8) != 0;
    const std::uint32_t seed = data[1];
    const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);

    const outcome whole = read(d, event_stream, hide, body, seed, 0);
    check(same(whole, read(d, event_stream, hide, body, seed, 1)), "byte by byte differs");
    check(same(whole, read(d, event_stream, hide, body, seed, 1 + seed % 61)), "split differs");
    if (hide)
        check(whole.out.size() <= body.size(), "hiding added bytes");
    else
        check(whole.out == body, "output differs from the body without hiding");
    return 0;
}

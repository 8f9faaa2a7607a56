#include "ratelimit_proxy/metering/usage_reader.hpp"

#include <array>

#include "json_scanner.hpp"
#include "sse_decoder.hpp"
#include "usage_json.hpp"

namespace ratelimit_proxy::metering {

static_assert(usage_reader::max_usage_text == json_scanner::max_usage_text);

struct usage_reader::state {
    dialect kind;
    bool event_stream;
    bool hide;  // hide chat completions' usage-only chunk in an event stream

    sse_decoder sse;
    json_scanner json;
    std::size_t data_lines = 0;  // of the event being read
    std::array<char, 32> event_name{};
    std::size_t event_len = 0;
    bool event_too_long = false;
    bool body_done = false;  // not an event stream: the body's value was read (or is not JSON)

    // The current event's bytes ("segment": through its blank line), while it may be the
    // usage-only chunk. Only when hiding.
    std::string held;
    bool holding = false;
    bool end_pending = false;   // the event ended at a CR: an LF next still belongs to it
    bool drop_segment = false;  // the event that ended is the usage-only chunk
    std::string* out = nullptr;

    usage result;
    bool complete = false;

    state(dialect d, bool es, bool h)
        : kind(d),
          event_stream(es),
          hide(h && es && d == dialect::chat_completions),
          holding(hide) {}

    // sse_decoder's sink
    void data_line() {
        // Data lines of one event are joined with LF: JSON whitespace.
        if (data_lines++ > 0)
            json.put('\n');
    }
    void data(char c) { json.put(c); }
    void event_line() {
        event_len = 0;
        event_too_long = false;
    }
    void event_byte(char c) {
        if (event_len < event_name.size())
            event_name[event_len++] = c;
        else
            event_too_long = true;
    }
    void blank_line(bool cr) {
        end_event();
        if (cr)
            end_pending = true;
        else
            end_segment();
    }

    void end_event() {
        if (data_lines > 0)
            dispatch();
        data_lines = 0;
        event_len = 0;
        event_too_long = false;
        json.reset();
    }

    std::string_view event_type() const {
        // The data's own "type" (the Responses API and Anthropic send both), else the event field.
        const std::string_view type = json.type();
        if (!type.empty() || event_too_long)
            return type;
        return {event_name.data(), event_len};
    }

    void take(dialect d, json_scanner::where where, bool final) {
        if (!json.has_usage() || json.usage_where() != where)
            return;
        if (const auto u = usage_from_json(d, json.usage_text())) {
            result = *u;
            complete = complete || final;
        }
    }

    // An event ended: its usage, if it carries the dialect's.
    void dispatch() {
        if (!json.complete())
            return;
        using where = json_scanner::where;
        const std::string_view type = event_type();
        switch (kind) {
            case dialect::chat_completions:
            case dialect::embeddings: {
                if (!json.has_usage() || json.usage_where() != where::top)
                    break;
                const auto u = usage_from_json(kind, json.usage_text());
                if (!u)
                    break;
                result = *u;
                complete = true;
                // The usage-only chunk: empty choices, usage set.
                drop_segment = kind == dialect::chat_completions &&
                               json.choices() == json_scanner::value_kind::empty_array &&
                               json.top_usage() == json_scanner::value_kind::object;
                break;
            }
            case dialect::responses:
                if (type == "response.completed" || type == "response.incomplete" ||
                    type == "response.failed")
                    take(kind, where::response, true);
                break;
            case dialect::messages:
                if (type == "message_start") {
                    take(kind, where::message, false);
                } else if (type == "message_delta") {
                    if (json.has_usage() && json.usage_where() == where::top &&
                        update_messages_usage(result, json.usage_text()))
                        complete = true;
                } else if (type == "message_stop" && result.seen) {
                    complete = true;
                }
                break;
            case dialect::none:
                break;
        }
    }

    // While hiding: whether the event being read may still be the usage-only chunk.
    bool may_be_usage_chunk() const {
        using kind = json_scanner::value_kind;
        if (json.failed())
            return false;
        const kind choices = json.choices();
        const kind usage = json.top_usage();
        if (choices == kind::array || choices == kind::other || usage == kind::null ||
            usage == kind::other)
            return false;
        return !json.complete() || (choices == kind::empty_array && usage == kind::object);
    }

    void flush_held() {
        out->append(held);
        held.clear();
        holding = false;
    }

    void end_segment() {
        if (holding) {
            if (!drop_segment)
                out->append(held);
            held.clear();
        }
        drop_segment = false;
        holding = hide;
    }

    void emit(char c) {
        if (!holding) {
            out->push_back(c);
        } else if (!append_bounded(held, c, max_held_event)) {
            // Longer than any usage-only chunk: passed on as it comes.
            flush_held();
            out->push_back(c);
        }
    }

    // A byte of an event stream while hiding.
    void hiding_byte(char c) {
        if (end_pending) {
            end_pending = false;
            if (c == '\n') {
                emit(c);
                sse.put(c, *this);  // the LF of the CRLF: no new line
                end_segment();
                return;
            }
            end_segment();
        }
        emit(c);
        sse.put(c, *this);
        if (holding && !may_be_usage_chunk())
            flush_held();
    }

    void json_body_byte(char c) {
        json.put(c);
        if (json.complete()) {
            take(kind, json_scanner::where::top, true);
            body_done = true;
        } else if (json.failed()) {
            body_done = true;
        }
    }
};

usage_reader::usage_reader(dialect d, bool event_stream, bool hide_usage_chunk)
    : state_(std::make_unique<state>(d, event_stream, hide_usage_chunk)) {}
usage_reader::~usage_reader() = default;
usage_reader::usage_reader(usage_reader&&) noexcept = default;
usage_reader& usage_reader::operator=(usage_reader&&) noexcept = default;

void usage_reader::feed(std::string_view in, std::string& out) {
    state& s = *state_;
    if (!rewrites()) {
        out.append(in);
        scan(in);
        return;
    }
    s.out = &out;
    for (const char c : in)
        s.hiding_byte(c);
    s.out = nullptr;
}

void usage_reader::scan(std::string_view in) {
    state& s = *state_;
    if (s.kind == dialect::none)
        return;
    if (!s.event_stream) {
        for (std::size_t i = 0; i < in.size() && !s.body_done; ++i)
            s.json_body_byte(in[i]);
        return;
    }
    for (const char c : in)
        s.sse.put(c, s);
}

bool usage_reader::rewrites() const {
    // Only an event stream's usage chunk is ever dropped.
    return state_->hide && state_->event_stream && state_->kind != dialect::none;
}

void usage_reader::finish(std::string& out) {
    state& s = *state_;
    s.out = &out;
    if (s.kind != dialect::none && s.event_stream) {
        if (s.end_pending) {
            s.end_pending = false;
            s.end_segment();
        }
        // An event the body ended inside: counted if its JSON is whole (end_event checks).
        s.end_event();
        s.end_segment();
    }
    s.out = nullptr;
}

const usage& usage_reader::result() const {
    return state_->result;
}
bool usage_reader::complete() const {
    return state_->complete;
}
std::size_t usage_reader::held_bytes() const {
    return state_->held.size();
}
std::size_t usage_reader::buffer_capacity() const {
    return state_->held.capacity() + state_->json.capacity();
}

}  // namespace ratelimit_proxy::metering

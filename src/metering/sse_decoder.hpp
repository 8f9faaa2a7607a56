#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ratelimit_proxy::metering {

// The line and field rules of the WHATWG event stream format, a byte at a time, keeping no line:
// lines end in LF, CRLF or CR; a line starting with ':' is a comment; "name:value" drops one
// space after the colon; a line without a colon is a field with an empty value; unknown fields
// are ignored; an empty line ends the event. The sink gets:
//   data_line()         a "data" line begins (its value follows as data() calls)
//   data(char)          a byte of a data line's value
//   event_line()        an "event" line begins (its value follows as event_byte() calls)
//   event_byte(char)    a byte of an event line's value
//   blank_line(bool cr) an empty line: the event ends; cr if it ended with a CR, which an LF
//                       may still follow (that LF then belongs to this line ending)
class sse_decoder {
  public:
    template <class Sink>
    void put(char c, Sink& sink) {
        if (after_cr_) {
            after_cr_ = false;
            if (c == '\n')
                return;  // the LF of a CRLF
        }
        if (c == '\n' || c == '\r') {
            after_cr_ = c == '\r';
            end_line(sink, after_cr_);
            return;
        }
        switch (state_) {
            case state::line_start:
                if (c == ':') {
                    state_ = state::ignore;
                    return;
                }
                name_len_ = 0;
                state_ = state::name;
                add_name(c);
                return;
            case state::name:
                if (c == ':') {
                    begin_value(sink);
                    state_ = state::value_start;
                } else {
                    add_name(c);
                }
                return;
            case state::value_start:
                state_ = state::value;
                if (c == ' ')
                    return;
                [[fallthrough]];
            case state::value:
                if (field_ == field::data)
                    sink.data(c);
                else if (field_ == field::event)
                    sink.event_byte(c);
                return;
            case state::ignore:
                return;
        }
    }

    void reset() { *this = sse_decoder(); }

  private:
    enum class state : std::uint8_t { line_start, name, value_start, value, ignore };
    enum class field : std::uint8_t { data, event, other };

    template <class Sink>
    void end_line(Sink& sink, bool cr) {
        if (state_ == state::line_start)
            sink.blank_line(cr);
        else if (state_ == state::name)
            begin_value(sink);  // a field name alone: its value is empty
        state_ = state::line_start;
    }

    template <class Sink>
    void begin_value(Sink& sink) {
        const std::string_view name(name_.data(), name_len_);
        field_ = name == "data" ? field::data : name == "event" ? field::event : field::other;
        if (field_ == field::data)
            sink.data_line();
        else if (field_ == field::event)
            sink.event_line();
    }

    void add_name(char c) {
        // Longer than any field name looked for: kept as a name that matches none.
        if (name_len_ < name_.size())
            name_[name_len_++] = c;
        else
            name_[0] = '\0';
    }

    state state_ = state::line_start;
    field field_ = field::other;
    bool after_cr_ = false;
    std::array<char, 8> name_{};
    std::size_t name_len_ = 0;
};

}  // namespace ratelimit_proxy::metering

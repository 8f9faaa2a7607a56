#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ratelimit_proxy::metering {

// An incremental scanner of one JSON value, fed a byte at a time in constant memory, that keeps
// only what metering needs: the text of a "usage" object (at the top level, or in the top-level
// "response" / "message" object), the top-level "type" string, and whether the top-level
// "choices" is an empty array. Everything else is skipped by counting brackets outside strings,
// so a "usage" inside a string or a deeper object is never taken. It checks the structure it
// walks, not every literal: the usage text it keeps is parsed by nlohmann afterwards.
class json_scanner {
  public:
    enum class where : std::uint8_t { top, response, message };
    enum class value_kind : std::uint8_t {
        absent,
        object,
        null,
        other,
        open_array,   // "choices": its '[' read, no element yet
        empty_array,  // "choices": []
        array,        // "choices": an element seen
    };

    // Usage text beyond this is ignored (a real usage object is a few hundred bytes).
    static constexpr std::size_t max_usage_text = 8 * 1024;

    void reset();
    void put(char c);
    void put(std::string_view text) {
        for (char c : text)
            put(c);
    }

    // The value was one object, closed, with nothing but whitespace after it so far.
    bool complete() const { return mode_ == mode::done; }
    // Not an object, broken structure, or bytes after the object: nothing of it counts.
    bool failed() const { return mode_ == mode::failed; }

    // The last "usage" object closed within max_usage_text, and where it was.
    bool has_usage() const { return usage_state_ == capture::closed; }
    std::string_view usage_text() const { return usage_; }
    where usage_where() const { return usage_where_; }
    // The last top-level "usage" value: absent, object, null or other.
    value_kind top_usage() const { return top_usage_; }
    // The top-level "choices": absent, open_array, empty_array, array or other.
    value_kind choices() const { return choices_; }
    // The top-level "type" string (decoded; empty if absent, not a string or too long).
    std::string_view type() const { return type_ok_ ? type_text_.view() : std::string_view(); }

    // The usage text's buffer, for tests of the memory bound.
    std::size_t capacity() const { return usage_.capacity(); }

  private:
    enum class mode : std::uint8_t {
        start,      // before the top-level value
        object,     // between tokens of a tracked object (top level, or response / message)
        key,        // in a key of a tracked object
        string,     // in a string value of a tracked object (the top-level "type" is kept)
        scalar,     // in a number or literal value of a tracked object
        container,  // in an array or object value below a tracked object, skipped or captured
        done,
        failed,
    };
    enum class expect : std::uint8_t { key_or_end, key, colon, value, comma_or_end };
    enum class key_id : std::uint8_t { other, usage, response, message, choices, type };
    enum class capture : std::uint8_t { none, open, closed, too_long };

    // A decoded string of up to 64 bytes (keys, the type): escapes resolved, \uXXXX only for
    // ASCII (none of the names looked for has other characters).
    struct short_string {
        std::array<char, 64> text{};
        std::size_t len = 0;
        bool ok = true;
        std::uint8_t escape = 0;  // 0 none, 1 after '\', 2..5 hex digits of \uXXXX read + 2
        std::uint32_t code = 0;
        void clear() { *this = short_string(); }
        // Returns true at the closing quote.
        bool put(char c);
        void add(char c);
        std::string_view view() const { return {text.data(), len}; }
    };

    void fail() { mode_ = mode::failed; }
    void object_byte(char c);
    void begin_value(char c);
    void container_byte(char c);
    void open_container();
    void end_value();
    void close_object();
    bool append_usage(char c);
    std::size_t level() const { return static_cast<std::size_t>(depth_ > 1 ? 1 : 0); }

    mode mode_ = mode::start;
    std::uint64_t depth_ = 0;  // open brackets; tracked objects are depth 1 and 2
    std::array<expect, 2> expect_{};
    key_id key_ = key_id::other;
    where parent_ = where::top;  // which object depth 2 is
    short_string key_text_;
    bool in_string_ = false;  // in container mode
    bool escaped_ = false;
    bool string_is_type_ = false;
    std::uint64_t container_base_ = 0;  // the depth container mode returns to
    bool capturing_ = false;
    bool choices_open_ = false;  // the top-level "choices" array is open, no element seen yet

    std::string usage_;
    capture usage_state_ = capture::none;
    where usage_where_ = where::top;
    value_kind top_usage_ = value_kind::absent;
    value_kind choices_ = value_kind::absent;
    bool type_ok_ = false;
    short_string type_text_;
};

// Appends `c` to `s` unless `s` holds `limit` bytes (a power of two at least 256); the capacity
// doubles from 256 and so never exceeds `limit`. Returns false when full.
bool append_bounded(std::string& s, char c, std::size_t limit);

}  // namespace ratelimit_proxy::metering

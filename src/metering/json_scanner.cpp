#include "json_scanner.hpp"

#include <algorithm>
#include <utility>

namespace ratelimit_proxy::metering {

namespace {

bool json_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// What may appear in a number or a literal (true, false, null).
bool scalar_byte(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '+' || c == '.';
}

}  // namespace

bool append_bounded(std::string& s, char c, std::size_t limit) {
    if (s.size() >= limit)
        return false;
    if (s.size() == s.capacity())
        s.reserve(std::min(limit, std::max<std::size_t>(256, s.capacity() * 2)));
    s.push_back(c);
    return true;
}

void json_scanner::short_string::add(char c) {
    if (len == text.size())
        ok = false;
    else
        text[len++] = c;
}

bool json_scanner::short_string::put(char c) {
    if (escape == 1) {
        escape = 0;
        switch (c) {
            case '"':
            case '\\':
            case '/':
                add(c);
                return false;
            case 'b':
                add('\b');
                return false;
            case 'f':
                add('\f');
                return false;
            case 'n':
                add('\n');
                return false;
            case 'r':
                add('\r');
                return false;
            case 't':
                add('\t');
                return false;
            case 'u':
                escape = 2;
                code = 0;
                return false;
            default:
                ok = false;
                return false;
        }
    }
    if (escape >= 2) {
        const int digit = hex_digit(c);
        if (digit >= 0) {
            code = code * 16 + static_cast<std::uint32_t>(digit);
            if (++escape == 6) {
                escape = 0;
                if (code < 0x80)
                    add(static_cast<char>(code));
                else
                    ok = false;
            }
            return false;
        }
        // A broken \u escape: the string is no name we look for; `c` is read as itself (it may
        // be the closing quote).
        ok = false;
        escape = 0;
    }
    if (c == '"')
        return true;
    if (c == '\\')
        escape = 1;
    else
        add(c);
    return false;
}

void json_scanner::reset() {
    // Keeps the usage buffer's memory: a stream has many events.
    std::string keep = std::move(usage_);
    keep.clear();
    *this = json_scanner();
    usage_ = std::move(keep);
}

void json_scanner::put(char c) {
    switch (mode_) {
        case mode::start:
            if (json_space(c))
                return;
            if (c != '{')
                return fail();
            depth_ = 1;
            expect_[0] = expect::key_or_end;
            mode_ = mode::object;
            return;
        case mode::object:
            return object_byte(c);
        case mode::key:
            if (key_text_.put(c)) {
                const std::string_view name = key_text_.ok ? key_text_.view() : "";
                key_ = name == "usage"      ? key_id::usage
                       : name == "response" ? key_id::response
                       : name == "message"  ? key_id::message
                       : name == "choices"  ? key_id::choices
                       : name == "type"     ? key_id::type
                                            : key_id::other;
                mode_ = mode::object;
                expect_[level()] = expect::colon;
            }
            return;
        case mode::string:
            if (string_is_type_) {
                if (type_text_.put(c)) {
                    type_ok_ = type_text_.ok;
                    end_value();
                }
            } else if (escaped_) {
                escaped_ = false;
            } else if (c == '\\') {
                escaped_ = true;
            } else if (c == '"') {
                end_value();
            }
            return;
        case mode::scalar:
            if (json_space(c) || c == ',' || c == '}' || c == ']') {
                end_value();
                object_byte(c);
            } else if (!scalar_byte(c)) {
                fail();
            }
            return;
        case mode::container:
            return container_byte(c);
        case mode::done:
            if (!json_space(c))
                fail();
            return;
        case mode::failed:
            return;
    }
}

void json_scanner::object_byte(char c) {
    if (json_space(c))
        return;
    expect& e = expect_[level()];
    switch (e) {
        case expect::key_or_end:
        case expect::key:
            if (c == '"') {
                key_text_.clear();
                mode_ = mode::key;
            } else if (c == '}' && e == expect::key_or_end) {
                close_object();
            } else {
                fail();
            }
            return;
        case expect::colon:
            if (c == ':')
                e = expect::value;
            else
                fail();
            return;
        case expect::value:
            return begin_value(c);
        case expect::comma_or_end:
            if (c == ',')
                e = expect::key;
            else if (c == '}')
                close_object();
            else
                fail();
            return;
    }
}

void json_scanner::close_object() {
    if (--depth_ == 0) {
        mode_ = mode::done;
        return;
    }
    // The response / message object closed: back in the top-level object.
    expect_[0] = expect::comma_or_end;
}

void json_scanner::begin_value(char c) {
    const bool top = depth_ == 1;
    switch (key_) {
        case key_id::usage:
            // A later "usage" replaces an earlier one.
            usage_state_ = capture::none;
            if (top)
                top_usage_ = c == '{'   ? value_kind::object
                             : c == 'n' ? value_kind::null
                                        : value_kind::other;
            if (c == '{') {
                usage_.clear();
                usage_state_ = capture::open;
                usage_where_ = top ? where::top : parent_;
                capturing_ = true;
                append_usage(c);
                return open_container();
            }
            break;
        case key_id::response:
        case key_id::message:
            if (top && c == '{') {
                parent_ = key_ == key_id::response ? where::response : where::message;
                depth_ = 2;
                expect_[1] = expect::key_or_end;
                return;
            }
            break;
        case key_id::choices:
            if (!top)
                break;
            if (c == '[') {
                choices_ = value_kind::open_array;
                choices_open_ = true;
                return open_container();
            }
            choices_ = value_kind::other;
            break;
        case key_id::type:
            if (!top)
                break;
            type_ok_ = false;
            if (c == '"') {
                type_text_.clear();
                string_is_type_ = true;
                mode_ = mode::string;
                return;
            }
            break;
        case key_id::other:
            break;
    }
    // A value nothing is wanted from: skipped.
    if (c == '{' || c == '[')
        return open_container();
    if (c == '"') {
        string_is_type_ = false;
        escaped_ = false;
        mode_ = mode::string;
        return;
    }
    if (!scalar_byte(c))
        return fail();
    mode_ = mode::scalar;
}

void json_scanner::open_container() {
    container_base_ = depth_;
    ++depth_;
    in_string_ = false;
    escaped_ = false;
    mode_ = mode::container;
}

void json_scanner::container_byte(char c) {
    if (capturing_ && usage_state_ == capture::open && !append_usage(c))
        usage_state_ = capture::too_long;
    if (in_string_) {
        if (escaped_)
            escaped_ = false;
        else if (c == '\\')
            escaped_ = true;
        else if (c == '"')
            in_string_ = false;
        return;
    }
    if (json_space(c))
        return;
    if (choices_open_) {
        choices_open_ = false;
        choices_ = c == ']' ? value_kind::empty_array : value_kind::array;
    }
    switch (c) {
        case '"':
            in_string_ = true;
            return;
        case '{':
        case '[':
            ++depth_;
            return;
        case '}':
        case ']':
            if (--depth_ == container_base_) {
                if (capturing_) {
                    capturing_ = false;
                    if (usage_state_ == capture::open)
                        usage_state_ = capture::closed;
                }
                end_value();
            }
            return;
        default:
            return;
    }
}

void json_scanner::end_value() {
    mode_ = mode::object;
    expect_[level()] = expect::comma_or_end;
}

bool json_scanner::append_usage(char c) {
    return append_bounded(usage_, c, max_usage_text);
}

}  // namespace ratelimit_proxy::metering
